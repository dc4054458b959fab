//! admission (to be built).
