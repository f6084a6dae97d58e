//! The telegen agent.

pub mod discovery;
