//! peerlane: the facade applications link against (in progress).
