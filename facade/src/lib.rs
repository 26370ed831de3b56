//! The facade and the sidecar supervisor (being built: see issue "Skills").
