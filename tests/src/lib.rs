//! repovault's test harness: an in-process cluster, real git servers, fixture repositories.

pub mod bench;
pub mod cluster;
pub mod coordinator_group;
pub mod counting_kv;
pub mod counting_proxy;
pub mod etcd_cluster;
pub mod etcd_peer;
pub mod fixtures;
pub mod gate;
pub mod gitserver;
/// IAM users and enforced IAM in moto, for least-privilege tests.
pub mod moto_iam;
pub mod object_stores;
pub mod pki;
pub mod proc_cpu;
pub mod process;
pub mod standalone;
