//! Shared helpers for integration tests.

pub mod agent;
pub mod peers;
pub mod receiver;
