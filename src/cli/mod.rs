//! Binary-only parts of the command line.

pub mod pull_view;
