//! hearth-server's integration tests, one module per area, in one binary: every test binary links the
//! whole crate graph, llama.cpp included, so one binary links it once instead of once per file.

mod adapters;
mod common;
mod console;
mod gateway;
mod http;
mod messages;
mod openapi;
mod overload;
mod qwen;
mod recs;
mod rerank;
mod responses;
mod scopes;
mod security;
mod shopping;
mod store;
mod support_eval;
mod support_sessions;
