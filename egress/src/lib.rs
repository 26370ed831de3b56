//! The egress proxy (being built: see issue "Filtered network").
