//! Message brokers that join ringcast nodes: Redis Cluster sharded pub/sub ([`cluster`]).
//! (The single-Redis subscriber core moves here too.)

pub mod cluster;
