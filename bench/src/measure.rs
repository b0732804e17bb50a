//! Closed-loop measurement, the same for every system: `in_flight` tasks,
//! spread over the connections, each calling as soon as its last call
//! answered, first for a warm-up, then for a measured window.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One echo call on some system's connection; checks the reply is the
/// payload sent.
pub trait Echo: Send + Sync + 'static {
    fn call(&self, payload: &bytes::Bytes) -> impl Future<Output = Result<(), String>> + Send;
}

pub fn echoed(reply: &[u8], payload: &[u8]) -> Result<(), String> {
    if reply == payload {
        Ok(())
    } else {
        Err(format!(
            "the echo answered {} bytes that are not the {} sent",
            reply.len(),
            payload.len()
        ))
    }
}

/// What one point measured on one system.
#[derive(Debug, Clone)]
pub struct Sample {
    pub calls: usize,
    pub elapsed: Duration,
    /// Per-call latency, send to reply, sorted.
    pub latencies: Vec<Duration>,
}

impl Sample {
    // Call counts are far below 2^52, where f64 starts to round.
    #[allow(clippy::cast_precision_loss)]
    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The nearest-rank percentile, in µs.
    pub fn percentile_us(&self, p: usize) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = (p * n).div_ceil(100).clamp(1, n);
        self.latencies[rank - 1].as_secs_f64() * 1e6
    }
}

/// Calls for `window` after `warm_up`, `in_flight` at a time, task `i` on
/// connection `i % conns.len()`. Only calls sent inside the window count.
pub async fn drive<E: Echo>(
    conns: &[Arc<E>],
    in_flight: usize,
    payload: &bytes::Bytes,
    warm_up: Duration,
    window: Duration,
) -> Result<Sample, String> {
    let start = Instant::now();
    let (from, until) = (start + warm_up, start + warm_up + window);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..in_flight {
        let echo = Arc::clone(&conns[i % conns.len()]);
        let payload = payload.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                echo.call(&payload).await?;
                if sent >= from {
                    latencies.push(sent.elapsed());
                }
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.map_err(|e| e.to_string())??);
    }
    // The window is over when the last call sent inside it has answered.
    let elapsed = Instant::now().saturating_duration_since(from);
    latencies.sort_unstable();
    Ok(Sample {
        calls: latencies.len(),
        elapsed,
        latencies,
    })
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| !x.is_nan());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        f64::midpoint(xs[n / 2 - 1], xs[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(vec![4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
        let s = Sample {
            calls: 4,
            elapsed: Duration::from_secs(2),
            latencies: (1..=4).map(Duration::from_micros).collect(),
        };
        assert!((s.calls_per_sec() - 2.0).abs() < 1e-9);
        assert!((s.percentile_us(50) - 2.0).abs() < 1e-6);
        assert!((s.percentile_us(99) - 4.0).abs() < 1e-6);
    }
}
