//! Sockets and readiness: the acceptor, the worker threads that read and
//! decode, the writer threads that drain queues onto sockets. This layer
//! knows bytes and readiness, not commands: it hands decoded requests to
//! the doors (`crate::doors`) and queued frames to sockets.

pub(crate) mod acceptor;
pub(crate) mod tls;
pub(crate) mod worker;
pub(crate) mod writer;
