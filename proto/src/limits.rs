//! Protocol limits and their negotiation in `version`.

/// The protocol version string this crate speaks.
pub const PROTOCOL_VERSION: &str = "srpc/1";

/// Negotiable limits. A client proposes values in `Tversion`; the server answers
/// with the element-wise minimum of the proposal and its own configuration, and
/// both sides enforce the answer for the rest of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, header included, in bytes.
    pub max_message: u32,
    /// Fids bound at once on one connection (auth fids included).
    pub max_fids: u32,
    /// Names in one `Twalk`.
    pub max_walk: u32,
    /// Bytes in one name (walk element, user name, path element).
    pub max_name: u32,
    /// Requests sent and not yet answered on one connection.
    pub max_pending: u32,
}

/// The ceilings no negotiation may exceed: a peer proposing more gets these.
pub const HARD_LIMITS: Limits = Limits {
    max_message: 16 * 1024 * 1024,
    max_fids: 65_536,
    max_walk: 64,
    max_name: 255,
    max_pending: 4096,
};

/// The limits of srpcd's internal links (front to worker, worker to handler,
/// and the handler library's end): the hard ceilings. The one rule is that an
/// internal end never refuses what the front accepted: the front enforces each
/// connection's negotiated limits towards its client (requests when read,
/// replies before they are sent), so every internal end accepts anything up to
/// the ceiling a negotiation can reach, whatever `max_message` is configured.
pub const INTERNAL_LINK_LIMITS: Limits = HARD_LIMITS;

impl Default for Limits {
    /// The defaults a client proposes and a server starts from.
    fn default() -> Self {
        Limits {
            max_message: 1024 * 1024,
            max_fids: 4096,
            max_walk: 16,
            max_name: 255,
            max_pending: 1024,
        }
    }
}

impl Limits {
    /// The element-wise minimum of two sets of limits (the negotiation rule).
    #[must_use]
    pub fn min(self, other: Limits) -> Limits {
        Limits {
            max_message: self.max_message.min(other.max_message),
            max_fids: self.max_fids.min(other.max_fids),
            max_walk: self.max_walk.min(other.max_walk),
            max_name: self.max_name.min(other.max_name),
            max_pending: self.max_pending.min(other.max_pending),
        }
    }

    /// Smallest values a peer may propose; below these the protocol cannot work
    /// (the version exchange itself must fit).
    pub const FLOOR: Limits = Limits {
        max_message: 4096,
        max_fids: 2,
        max_walk: 1,
        max_name: 1,
        max_pending: 1,
    };

    /// True when every limit is within `[FLOOR, HARD_LIMITS]`.
    pub fn is_sane(&self) -> bool {
        let f = Self::FLOOR;
        let h = HARD_LIMITS;
        (f.max_message..=h.max_message).contains(&self.max_message)
            && (f.max_fids..=h.max_fids).contains(&self.max_fids)
            && (f.max_walk..=h.max_walk).contains(&self.max_walk)
            && (f.max_name..=h.max_name).contains(&self.max_name)
            && (f.max_pending..=h.max_pending).contains(&self.max_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_minimum_of_each_limit() {
        let client = Limits {
            max_message: 8192,
            max_fids: 10_000,
            ..Limits::default()
        };
        let got = client.min(Limits::default());
        assert_eq!(got.max_message, 8192);
        assert_eq!(got.max_fids, Limits::default().max_fids);
        assert!(Limits::default().is_sane());
        assert!(!Limits {
            max_message: 10,
            ..Limits::default()
        }
        .is_sane());
    }
}
