//! workflow (to be built).
