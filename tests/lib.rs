//! Shared helpers for the cross-crate scenarios in this folder.
