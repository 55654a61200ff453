//! What the events task tells the poller about images.

use tokio::sync::Notify;

/// What the events task tells the poller: an image changed (list images
/// again soon), and whether the stream is following the daemon now (then
/// the image figures are kept fresh by events, and the full listing can run
/// rarely).
#[derive(Debug, Default)]
pub struct ImageEvents {
    changed: Notify,
    following: std::sync::atomic::AtomicBool,
}

impl ImageEvents {
    /// Waits for the next image event.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// True while the event stream is connected and read.
    pub fn following(&self) -> bool {
        self.following.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Tells the poller an image changed.
    pub fn notify_changed(&self) {
        self.changed.notify_one();
    }

    /// Set by the events task as its stream connects and drops.
    pub fn set_following(&self, on: bool) {
        self.following
            .store(on, std::sync::atomic::Ordering::Release);
    }
}
