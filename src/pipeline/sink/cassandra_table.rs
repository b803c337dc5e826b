//! A user pipeline's typed table in Apache Cassandra.
