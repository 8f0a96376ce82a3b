//! The progress bar the requester commands draw on a terminal.

use signbus::requester;

/// The requester's progress bar on a terminal: sent, signed, failed, waiting.
pub struct Bar {
    bar: indicatif::ProgressBar,
    total: usize,
    sent: std::sync::atomic::AtomicUsize,
    signed: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
}

impl Bar {
    pub fn new(total: usize) -> Self {
        let bar = indicatif::ProgressBar::new(total as u64);
        let style =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        Bar {
            bar,
            total,
            sent: 0.into(),
            signed: 0.into(),
            failed: 0.into(),
        }
    }

    fn update(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (signed, failed) = (self.signed.load(Relaxed), self.failed.load(Relaxed));
        let sent = self.sent.load(Relaxed).min(self.total);
        let waiting = sent.saturating_sub(signed + failed);
        self.bar.set_position((signed + failed) as u64);
        self.bar.set_message(format!(
            "sent {sent}, signed {signed}, failed {failed}, waiting {waiting}"
        ));
    }
}

impl requester::Progress for Bar {
    fn sent(&self) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update();
    }

    fn replied(&self, ok: bool) {
        let n = if ok { &self.signed } else { &self.failed };
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update();
    }

    fn finished(&self) {
        self.bar.finish_and_clear();
    }
}
