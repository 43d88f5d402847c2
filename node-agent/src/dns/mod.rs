//! DNS over UDP/53 without a proxy: ring buffer reader (AsyncFd) → parse
//! (simple-dns) → track (pair queries with answers; Hubble's DNS families,
//! latency, flow records with the query name).

pub mod message;
pub mod reader;
pub mod tracker;
