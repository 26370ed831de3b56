//! Executes an omac bundle on Linux (being built: see issue "Runtime").
