//! ONNX Runtime for submitted models: one environment per process, sessions made under a
//! time limit and with the configured thread counts, and runs that a watchdog stops when
//! their time is up.
//!
//! A hostile file may be made to be slow to load or to run. Loading cannot be interrupted
//! through ONNX Runtime's API, so a session is built on a thread of its own and abandoned
//! (left to finish and be dropped) when the limit passes; a run is stopped with
//! `RunOptions::terminate`, which ONNX Runtime checks between operators. The structural
//! checks (`checks`) refuse what would be huge or unbounded before either happens.
//!
//! A file may also be made to be huge at run time only (a small graph whose intermediate
//! tensor is enormous), which no static estimate sees. Memory has a hard cap: every session
//! allocates from one CPU arena registered in the environment with a maximum size, so an
//! allocation past it fails inside ONNX Runtime and the run (or session) that asked for it
//! is refused with [`RunError::MemoryLimit`]; the process and its other work carry on. ONNX
//! Runtime's CPU provider has no per-session cap, so the arena is the process's: sized
//! `max_session_memory_bytes × concurrency`, fixed by the first session made. Like any ONNX
//! Runtime arena it keeps what it has grown to for reuse by later runs (shrinking it after
//! every run would cost each batch fresh allocations); the cap bounds that too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{RunOptions, Session};
use ort::AsPointer;

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
    /// The model asked for more memory than the arena's cap (building or running).
    #[error("the model needed more memory than the cap of {cap} bytes: {reason}")]
    MemoryLimit { cap: u64, reason: String },
    /// A run failed, or its output is not what the signature promised.
    #[error("running the model failed: {0}")]
    Failed(String),
}

/// Texts with which ONNX Runtime reports an allocation the arena refused (`BFCArena`:
/// "Available memory of N is smaller than requested bytes of M", then "Failed to allocate
/// memory for requested buffer of size M").
const OUT_OF_ARENA: [&str; 2] = ["Available memory of", "Failed to allocate memory"];

/// The memory-limit error when `reason` (an ONNX Runtime error's text) is the arena's refusal.
fn memory_limit(reason: &str) -> Option<RunError> {
    let cap = arena_cap()?;
    OUT_OF_ARENA
        .iter()
        .any(|text| reason.contains(text))
        .then(|| RunError::MemoryLimit { cap, reason: reason.to_owned() })
}

/// The cap of the process's arena, once registered.
fn arena_cap() -> Option<u64> {
    ARENA.get().and_then(|registered| registered.as_ref().ok().copied())
}

/// The process's capped CPU arena: `Ok(cap)` once registered, or why it could not be.
static ARENA: OnceLock<Result<u64, String>> = OnceLock::new();

/// Registers the environment's CPU arena with at most `cap` bytes (the first call decides;
/// later ones get the cap in effect). Sessions opt in with `session.use_env_allocators`.
fn capped_arena(env: &Environment, cap: u64) -> Result<u64, RunError> {
    ARENA
        .get_or_init(|| register_arena(env, cap).map(|()| cap).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| RunError::Refused(format!("the memory-capped arena could not be set up: {e}")))
}

fn register_arena(env: &Environment, cap: u64) -> ort::Result<()> {
    // Keys of OrtArenaCfg (onnxruntime_c_api.h, CreateArenaCfgV2). Extending by what is asked
    // (not the next power of two) lets a model use the cap rather than half of it.
    const SAME_AS_REQUESTED: usize = 1;
    let keys = [c"max_mem".as_ptr(), c"arena_extend_strategy".as_ptr()];
    let values = [usize::try_from(cap).unwrap_or(usize::MAX), SAME_AS_REQUESTED];
    let api = ort::api();
    let memory = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default)?;
    let mut config: *mut ort::sys::OrtArenaCfg = std::ptr::null_mut();
    // SAFETY: the key and value arrays have the length passed and outlive the call; the
    // configuration is released after the (copying) registration, whatever its outcome.
    unsafe {
        ort::Error::result_from_status((api.CreateArenaCfgV2)(
            keys.as_ptr(),
            values.as_ptr(),
            keys.len(),
            &mut config,
        ))?;
        let registered = ort::Error::result_from_status((api.CreateAndRegisterAllocator)(
            env.ptr().cast_mut(),
            memory.ptr(),
            config,
        ));
        (api.ReleaseArenaCfg)(config);
        registered
    }
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
    /// The cap of the process's ONNX Runtime arena, in bytes.
    pub arena_bytes: u64,
}

impl SessionLimits {
    pub fn from_settings(settings: &gradients_config::EvaluatorSettings) -> Self {
        Self {
            intra_op_threads: settings.intra_op_threads,
            inter_op_threads: settings.inter_op_threads,
            session_timeout: settings.session_timeout(),
            arena_bytes: settings.max_session_memory_bytes.saturating_mul(settings.concurrency as u64),
        }
    }
}

/// Builds a session for `onnx` within `limits.session_timeout`.
pub fn create_session(onnx: Arc<[u8]>, limits: SessionLimits) -> Result<Session, RunError> {
    let env = environment().map_err(|e| RunError::Refused(e.to_string()))?;
    capped_arena(env, limits.arena_bytes)?;
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ort-session".into())
        .spawn(move || {
            let refused = |e: &dyn std::fmt::Display| {
                let reason = e.to_string();
                memory_limit(&reason).unwrap_or(RunError::Refused(reason))
            };
            let built = Session::builder(env)
                .map_err(|e| refused(&e))
                .and_then(|b| b.with_env_allocators().map_err(|e| refused(&e)))
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
        let reason = error.to_string();
        if self.fired() {
            RunError::RunTimeout(self.limit)
        } else {
            memory_limit(&reason).unwrap_or(RunError::Failed(reason))
        }
    }
}
