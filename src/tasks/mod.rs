//! One task per daemon per job, each on that daemon's one connection: the
//! poller, the event stream, the disk usage, the pre-puller, the registry
//! checker and the pruner; and the discovery of daemons from files. No task
//! imports another: what two tasks share lives in a file of its own here.

pub mod discovery;
pub mod disk;
pub mod events;
pub mod failure;
pub mod image_events;
pub mod poller;
pub mod pruner;
pub mod puller;
pub mod registry_check;
pub mod schedule;
