//! Skills: metadata, discovery, registry files and layers (being built: see issue "Skills").
