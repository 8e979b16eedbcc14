//! A stateful LINSTOR controller simulator (REST API v1).
