//! Client side (being written).
