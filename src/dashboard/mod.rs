//! dashboard (to be built).
