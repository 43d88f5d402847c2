//! DNS over UDP/53 without a proxy: ring buffer (`kernel::ring`) → parse
//! (simple-dns) → track (pair queries with answers; Hubble's DNS families,
//! latency, flow records with the query name).

pub mod message;
pub mod tracker;
