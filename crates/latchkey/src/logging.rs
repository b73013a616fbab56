//! The log writer: log lines are formatted on the thread that logs them, then
//! handed through a bounded queue to one writer thread that writes them in
//! batches, so that a request never waits for stderr (a pipe under systemd or
//! a container runtime, whose writes and lock cost more than the request).
//!
//! The writer wakes for the first line of a batch, waits [`BATCH_WINDOW`] for
//! more, then writes everything queued with one `write` and flushes: a line
//! reaches the sink within about `BATCH_WINDOW` (well under 100 ms). When the
//! queue is full a line is dropped and counted instead of blocking, and the
//! writer reports the count (`N log lines dropped`) with its next batch.
//! [`LogGuard`] flushes what is queued when dropped: hold it for the life of
//! the process.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Lines the queue holds before new ones are dropped (a few MiB at most).
pub const QUEUE_LINES: usize = 16_384;
/// How long the writer collects lines after the first one of a batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(5);

enum Message {
    Line(Vec<u8>),
    Shutdown,
}

/// The request-side handle: a [`MakeWriter`] whose writes enqueue one line.
#[derive(Clone)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl LogWriter {
    /// Lines dropped since the writer last reported them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber's fmt layer writes each event as one buffer.
        match self.queue.try_send(Message::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Owns the writer thread; dropping it writes what is queued and stops it.
pub struct LogGuard {
    queue: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // A blocking send: at shutdown, waiting for room is right.
        if self.queue.send(Message::Shutdown).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Starts a writer thread writing to `sink` through a queue of `capacity` lines.
pub fn spawn<W: Write + Send + 'static>(
    sink: W,
    capacity: usize,
) -> io::Result<(LogWriter, LogGuard)> {
    let (queue, lines) = mpsc::sync_channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_batches(&lines, sink, &counter))?;
    Ok((
        LogWriter {
            queue: queue.clone(),
            dropped,
        },
        LogGuard {
            queue,
            thread: Some(thread),
        },
    ))
}

fn write_batches(lines: &Receiver<Message>, mut sink: impl Write, dropped: &AtomicU64) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let mut stop = match lines.recv() {
            Ok(Message::Line(line)) => {
                batch.extend_from_slice(&line);
                false
            }
            Ok(Message::Shutdown) | Err(_) => true,
        };
        if !stop {
            std::thread::sleep(BATCH_WINDOW);
        }
        while let Ok(message) = lines.try_recv() {
            match message {
                Message::Line(line) => batch.extend_from_slice(&line),
                Message::Shutdown => stop = true,
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            batch.extend_from_slice(dropped_line(lost).as_bytes());
        }
        // Nowhere to report a failing stderr: the batch is lost, the next one retried.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if stop {
            return;
        }
    }
}

/// The writer's own line about dropped lines, in the fmt layer's layout.
fn dropped_line(count: u64) -> String {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap_or_default();
    format!("{stamp}  WARN latchkey::logging: {count} log lines dropped (the log queue was full)\n")
}

/// Installs the global subscriber (level from `RUST_LOG`, default `info`)
/// writing to stderr through the writer thread; keep the guard until exit.
pub fn init() -> Option<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal());
    match spawn(io::stderr(), QUEUE_LINES) {
        Ok((writer, guard)) => {
            builder.with_writer(writer).init();
            Some(guard)
        }
        Err(e) => {
            builder.with_writer(io::stderr).init();
            tracing::warn!(error = %e, "cannot start the log writer thread; logging synchronously");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An in-memory sink; `gate`, when set, makes the first write block
    /// (after announcing itself) until the test releases it.
    #[derive(Clone, Default)]
    struct Sink {
        out: Arc<Mutex<Vec<u8>>>,
        gate: Option<Arc<Gate>>,
    }

    struct Gate {
        entered: Mutex<Option<mpsc::Sender<()>>>,
        release: Mutex<Option<Receiver<()>>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                if let Some(entered) = gate.entered.lock().unwrap().take() {
                    entered.send(()).unwrap();
                    let release = gate.release.lock().unwrap().take().unwrap();
                    release.recv().unwrap();
                }
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.out.lock().unwrap().clone()).unwrap()
        }
    }

    fn log(writer: &LogWriter, line: &str) {
        let mut w: &LogWriter = writer;
        w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn lines_arrive_in_order_and_shutdown_flushes_them() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone(), 100).unwrap();
        let sent: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        for line in &sent {
            log(&writer, line);
        }
        drop(guard);
        assert_eq!(lines(&sink.text()), sent);
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn nothing_is_lost_from_many_threads_within_capacity() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone(), 4_000).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let writer = writer.clone();
                s.spawn(move || {
                    for i in 0..1_000 {
                        log(&writer, &format!("{t} {i}"));
                    }
                });
            }
        });
        drop(guard);
        let text = sink.text();
        for t in 0..4 {
            let own: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .collect();
            let expected: Vec<String> = (0..1_000).map(|i| format!("{t} {i}")).collect();
            assert_eq!(own, expected, "thread {t}'s lines, in order");
        }
        assert_eq!(text.lines().count(), 4_000);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let sink = Sink {
            out: Arc::default(),
            gate: Some(Arc::new(Gate {
                entered: Mutex::new(Some(entered_tx)),
                release: Mutex::new(Some(release_rx)),
            })),
        };
        let (writer, guard) = spawn(sink.clone(), 10).unwrap();
        log(&writer, "first");
        // The writer is now stuck writing "first", with an empty queue.
        entered.recv().unwrap();
        for i in 0..10 {
            log(&writer, &format!("queued {i}"));
        }
        // These find the queue full: they must return at once, counted.
        for i in 0..25 {
            log(&writer, &format!("dropped {i}"));
        }
        assert_eq!(writer.dropped(), 25);
        release.send(()).unwrap();
        drop(guard);
        let text = sink.text();
        let got = lines(&text);
        assert_eq!(got[0], "first");
        let queued: Vec<String> = (0..10).map(|i| format!("queued {i}")).collect();
        assert_eq!(got[1..11], queued[..]);
        assert_eq!(got.len(), 12, "{text}");
        assert!(
            got[11]
                .ends_with("WARN latchkey::logging: 25 log lines dropped (the log queue was full)"),
            "{text}"
        );
        assert!(!text.contains("dropped 0"), "{text}");
        assert_eq!(writer.dropped(), 0, "the count was reported");
    }

    #[test]
    fn lines_after_shutdown_are_counted_not_blocking() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone(), 4).unwrap();
        log(&writer, "before");
        drop(guard);
        log(&writer, "after");
        assert_eq!(lines(&sink.text()), ["before"]);
        assert_eq!(writer.dropped(), 1);
    }
}
