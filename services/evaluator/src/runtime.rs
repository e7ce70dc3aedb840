//! ONNX Runtime for submitted models: one environment per process, sessions made under a
//! time limit and with the configured thread counts, and runs that a watchdog stops when
//! their time is up.
//!
//! A hostile file may be made to be slow to load or to run. Loading cannot be interrupted
//! through ONNX Runtime's API, so a session is built on a thread of its own and abandoned
//! (left to finish and be dropped) when the limit passes; a run is stopped with
//! `RunOptions::terminate`, which ONNX Runtime checks between operators. The structural
//! checks (`checks`) refuse what would be huge or unbounded before either happens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::{RunOptions, Session};

/// Why ONNX Runtime could not be used at all (not the fault of a submission).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime could not be loaded (is ORT_DYLIB_PATH set to libonnxruntime.so 1.31?): {0}")]
    Load(String),
}

/// Why a model could not be run (the model's fault, or its limits).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// ONNX Runtime refused the model when building a session.
    #[error("ONNX Runtime refused the model: {0}")]
    Refused(String),
    /// Building the session took longer than the limit.
    #[error("creating the session took more than {0:?}")]
    SessionTimeout(Duration),
    /// Running took longer than the limit.
    #[error("running the model took more than {0:?}")]
    RunTimeout(Duration),
    /// A run failed, or its output is not what the signature promised.
    #[error("running the model failed: {0}")]
    Failed(String),
}

/// The process's ONNX Runtime environment (ONNX Runtime allows one per process).
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        // ort panics when the library cannot be found; that is a configuration error here.
        std::panic::catch_unwind(|| ort::init().with_name("gradients-evaluator").build())
            .map_err(|_| "the ONNX Runtime library could not be loaded".to_owned())
            .and_then(|built| built.map_err(|e| e.to_string()))
    })
    .as_ref()
    .map_err(|e| RuntimeError::Load(e.clone()))
}

/// How sessions are made and how long they may take.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub session_timeout: Duration,
}

impl SessionLimits {
    pub fn from_settings(settings: &gradients_config::EvaluatorSettings) -> Self {
        Self {
            intra_op_threads: settings.intra_op_threads,
            inter_op_threads: settings.inter_op_threads,
            session_timeout: settings.session_timeout(),
        }
    }
}

/// Builds a session for `onnx` within `limits.session_timeout`.
pub fn create_session(onnx: Arc<[u8]>, limits: SessionLimits) -> Result<Session, RunError> {
    let env = environment().map_err(|e| RunError::Refused(e.to_string()))?;
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ort-session".into())
        .spawn(move || {
            let refused = |e: &dyn std::fmt::Display| RunError::Refused(e.to_string());
            let built = Session::builder(env)
                .map_err(|e| refused(&e))
                .and_then(|b| b.with_intra_threads(limits.intra_op_threads).map_err(|e| refused(&e)))
                .and_then(|b| b.with_inter_threads(limits.inter_op_threads).map_err(|e| refused(&e)))
                .and_then(|mut b| b.commit_from_memory(&onnx).map_err(|e| refused(&e)));
            // The receiver is gone when the limit passed: the session is simply dropped.
            let _ = sender.send(built);
        })
        .map_err(|e| RunError::Failed(format!("could not start a thread: {e}")))?;
    match receiver.recv_timeout(limits.session_timeout) {
        Ok(built) => built,
        Err(_) => Err(RunError::SessionTimeout(limits.session_timeout)),
    }
}

/// Run options that a watchdog terminates at a deadline; drop it to stop the watchdog.
pub struct Watchdog {
    pub options: Arc<RunOptions>,
    fired: Arc<AtomicBool>,
    limit: Duration,
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    /// Options whose runs stop once `limit` has passed from now.
    pub fn start(limit: Duration) -> Result<Self, RunError> {
        let options = Arc::new(RunOptions::new().map_err(|e| RunError::Failed(e.to_string()))?);
        let fired = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let deadline = Instant::now() + limit;
        {
            let (options, fired) = (options.clone(), fired.clone());
            std::thread::Builder::new()
                .name("ort-watchdog".into())
                .spawn(move || {
                    // Any message or a dropped sender means the work finished in time.
                    if let Err(mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        fired.store(true, Ordering::SeqCst);
                        let _ = options.terminate();
                    }
                })
                .map_err(|e| RunError::Failed(format!("could not start a thread: {e}")))?;
        }
        Ok(Self { options, fired, limit, _stop: stop })
    }

    /// Whether the deadline passed (a failed run then means "too slow", not "broken").
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// The error for a run that failed with `error`.
    pub fn run_error(&self, error: impl std::fmt::Display) -> RunError {
        if self.fired() {
            RunError::RunTimeout(self.limit)
        } else {
            RunError::Failed(error.to_string())
        }
    }
}
