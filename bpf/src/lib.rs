//! Telegen kernel programs and loader.
