//! Handler side (being written).
