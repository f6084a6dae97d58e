//! The telegen agent.
