/*
 * hold: a per-user handler that never answers, for the VM suite.
 *
 * A call to /hold keeps its caller's session (and so the worker, the clone
 * and this handler) alive while the suite reads /proc/PID/attr/current and the
 * clone's labels. It waits for a signal from the suite (root), then exits;
 * the call then fails, which the suite expects.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    fprintf(stderr, "hold: pid=%d uid=%d waiting\n", getpid(), getuid());
    fflush(stderr);
    for (int i = 0; i < 120; i++) {
        sleep(1); /* bounded: gone after two minutes even if nobody signals */
    }
    return 0;
}
