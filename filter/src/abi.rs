//! The module's side of the proxy-wasm ABI (version 0.2.1), written for this filter instead of
//! taking the proxy-wasm SDK's dispatcher.
//!
//! Why our own: every crossing between Envoy and the module costs Envoy thousands of
//! instructions whatever it carries (BENCHMARKS.md, the filter section), and the proxy-wasm host
//! (proxy-wasm-cpp-host, in Envoy 1.40) skips a callback the module does not export. The SDK
//! exports all of them; this module exports only what the filter uses (`host::dispatch`), so
//! for instance `proxy_on_done`, which the filter never needed, is no longer called for every
//! stream. It also answers `proxy_on_memory_allocate` itself ([`proxy_on_memory_allocate`]).
//!
//! This file holds the ABI's facts: the version marker, the module's entry point, the memory
//! the host writes into, the host functions the filter imports, and their enums. Each host call
//! returns a `Result`: a status the filter does not expect is an error, never a panic.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::null_mut;

/// The ABI version marker the host looks for among the module's exports (it refuses a module
/// without a known one).
#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_abi_version_0_2_1() {}

#[cfg(target_os = "wasi")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// The WASI reactor entry point: the host calls it once when the VM starts.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: the linker's constructor function, run once before any other export.
    unsafe {
        __wasm_call_ctors();
    }
    crate::host::start();
}

/// Memory for data the host hands over (a header map, a body chunk, a property, a foreign
/// function's result): the host calls this, then writes `size` bytes there, and the call that
/// asked for the data takes ownership with [`take`]. An allocation of exactly `size` bytes with
/// alignment 1 from the module's allocator, so the data the filter keeps (a header map, a first
/// body chunk) stays where the host wrote it: one copy, the host's, and no boxed `[u8]` turned
/// back into a `Vec`.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    let Ok(layout) = std::alloc::Layout::array::<u8>(size) else {
        return null_mut();
    };
    // SAFETY: `layout` has a non-zero size.
    unsafe { std::alloc::alloc(layout) }
}

/// Takes ownership of what the host wrote into memory from [`proxy_on_memory_allocate`].
pub(crate) fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    if size == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the host got `data` from `proxy_on_memory_allocate(size)` (an allocation of
    // `size` bytes, alignment 1, from the global allocator) and wrote `size` bytes into it.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// The ABI's enums, with the names the SDK gave them, limited to what the filter uses.
pub(crate) mod types {
    /// What a stream callback tells the proxy. The filter never pauses a stream.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u32)]
    pub(crate) enum Action {
        Continue = 0,
    }

    /// The proxy's log levels.
    #[derive(Debug, Clone, Copy)]
    #[repr(u32)]
    pub(crate) enum LogLevel {
        Warn = 3,
        Critical = 5,
    }

    /// The proxy's buffers the filter reads.
    #[derive(Debug, Clone, Copy)]
    #[repr(u32)]
    pub(crate) enum BufferType {
        HttpRequestBody = 0,
        HttpResponseBody = 1,
        PluginConfiguration = 7,
    }

    /// The proxy's header maps the filter reads (the SDK's names).
    #[allow(
        clippy::enum_variant_names,
        reason = "the SDK's names, kept for host.rs"
    )]
    #[derive(Debug, Clone, Copy)]
    #[repr(u32)]
    pub(crate) enum MapType {
        HttpRequestHeaders = 0,
        HttpRequestTrailers = 1,
        HttpResponseHeaders = 2,
        HttpResponseTrailers = 3,
    }

    /// The proxy's metric kinds.
    #[derive(Debug, Clone, Copy)]
    #[repr(u32)]
    pub(crate) enum MetricType {
        Counter = 0,
        Gauge = 1,
    }

    /// What a root context creates for each stream.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum ContextType {
        HttpContext,
    }

    /// A host call's status other than `Ok`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Status {
        NotFound,
        BadArgument,
        SerializationFailure,
        ParseFailure,
        Empty,
        CasMismatch,
        InternalFailure,
        Unknown(u32),
    }

    impl Status {
        pub(crate) fn from_code(code: u32) -> Self {
            match code {
                1 => Self::NotFound,
                2 => Self::BadArgument,
                3 => Self::SerializationFailure,
                4 => Self::ParseFailure,
                7 => Self::Empty,
                8 => Self::CasMismatch,
                10 => Self::InternalFailure,
                other => Self::Unknown(other),
            }
        }
    }
}

/// Every host function the module imports, declared once: the calls outside the data path
/// ([`hostcalls`]) and the data path's own (`host::raw`) both go through these.
pub(crate) mod ffi {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub(crate) fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        pub(crate) fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub(crate) fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub(crate) fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub(crate) fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        #[cfg_attr(
            not(feature = "panic-on-demand"),
            allow(dead_code, reason = "used by the panic-on-demand test build")
        )]
        pub(crate) fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub(crate) fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub(crate) fn proxy_call_foreign_function(
            function_name_data: *const u8,
            function_name_size: usize,
            arguments_data: *const u8,
            arguments_size: usize,
            results_data: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
        pub(crate) fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        pub(crate) fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        pub(crate) fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
        pub(crate) fn proxy_grpc_call(
            upstream_data: *const u8,
            upstream_size: usize,
            service_name_data: *const u8,
            service_name_size: usize,
            method_name_data: *const u8,
            method_name_size: usize,
            initial_metadata_data: *const u8,
            initial_metadata_size: usize,
            message_data: *const u8,
            message_size: usize,
            timeout_milliseconds: u32,
            return_token: *mut u32,
        ) -> u32;
        pub(crate) fn proxy_get_status(
            return_code: *mut u32,
            return_message_data: *mut *mut u8,
            return_message_size: *mut usize,
        ) -> u32;
    }
}

/// The host calls the filter makes outside the data path (which has its own in `host::raw`),
/// with the SDK's names and signatures; a status the filter does not expect is an `Err`, never
/// a panic.
pub(crate) mod hostcalls {
    use std::ptr::null_mut;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::ffi::*;
    use super::take;
    use super::types::{BufferType, LogLevel, MapType, MetricType, Status};

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;

    fn status(code: u32) -> Result<(), Status> {
        if code == OK {
            Ok(())
        } else {
            Err(Status::from_code(code))
        }
    }

    /// Data the host returned: `Ok(None)` where it found none.
    fn data(code: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, Status> {
        match code {
            OK => Ok(take(data, size)),
            NOT_FOUND => Ok(None),
            other => Err(Status::from_code(other)),
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }

    /// Logs a message at `level` in the proxy's log.
    pub(crate) fn log(level: LogLevel, message: &str) -> Result<(), Status> {
        // SAFETY: the pointer and length describe `message` for the call.
        status(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
    }

    /// The proxy's wall clock.
    pub(crate) fn get_current_time() -> Result<SystemTime, Status> {
        let mut nanos = 0;
        // SAFETY: the host writes one `u64` to a valid pointer.
        status(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
        Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
    }

    /// Asks the proxy to call `proxy_on_tick` on the calling root context every `period`.
    pub(crate) fn set_tick_period(period: Duration) -> Result<(), Status> {
        let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: no pointers.
        status(unsafe { proxy_set_tick_period_milliseconds(millis) })
    }

    /// At most `max_size` bytes of a buffer from `start`.
    pub(crate) fn get_buffer(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
    ) -> Result<Option<Vec<u8>>, Status> {
        let mut out = null_mut();
        let mut size = 0;
        // SAFETY: as above.
        let code = unsafe {
            proxy_get_buffer_bytes(buffer_type as u32, start, max_size, &mut out, &mut size)
        };
        data(code, out, size)
    }

    /// One header's value.
    #[cfg_attr(
        not(feature = "panic-on-demand"),
        allow(dead_code, reason = "used by the panic-on-demand test build")
    )]
    pub(crate) fn get_map_value(map_type: MapType, key: &str) -> Result<Option<String>, Status> {
        let mut out = null_mut();
        let mut size = 0;
        // SAFETY: as above.
        let code = unsafe {
            proxy_get_header_map_value(
                map_type as u32,
                key.as_ptr(),
                key.len(),
                &mut out,
                &mut size,
            )
        };
        Ok(data(code, out, size)?.map(text))
    }

    /// Defines a metric; its id.
    pub(crate) fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, Status> {
        let mut id = 0;
        // SAFETY: as above.
        status(unsafe {
            proxy_define_metric(metric_type as u32, name.as_ptr(), name.len(), &mut id)
        })?;
        Ok(id)
    }

    /// Adds to a counter.
    pub(crate) fn increment_metric(metric_id: u32, offset: i64) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_increment_metric(metric_id, offset) })
    }

    /// Sets a gauge.
    pub(crate) fn record_metric(metric_id: u32, value: u64) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_record_metric(metric_id, value) })
    }

    /// Starts a unary gRPC call; the proxy answers on the calling root context with
    /// `proxy_on_grpc_receive` (success) or `proxy_on_grpc_close` (failure). The call's token.
    pub(crate) fn dispatch_grpc_call(
        upstream_name: &str,
        service_name: &str,
        method_name: &str,
        initial_metadata: Vec<(&str, &[u8])>,
        message: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, Status> {
        let metadata = if initial_metadata.is_empty() {
            Vec::new()
        } else {
            crate::headers::serialize(&initial_metadata)
        };
        let message = message.unwrap_or_default();
        let timeout = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let mut token = 0;
        // SAFETY: every pointer and length describes a live slice for the call.
        status(unsafe {
            proxy_grpc_call(
                upstream_name.as_ptr(),
                upstream_name.len(),
                service_name.as_ptr(),
                service_name.len(),
                method_name.as_ptr(),
                method_name.len(),
                metadata.as_ptr(),
                metadata.len(),
                message.as_ptr(),
                message.len(),
                timeout,
                &mut token,
            )
        })?;
        Ok(token)
    }

    /// The status code and message of the gRPC call being answered.
    pub(crate) fn get_grpc_status() -> Result<(u32, Option<String>), Status> {
        let mut code = 0;
        let mut out = null_mut();
        let mut size = 0;
        // SAFETY: as above.
        status(unsafe { proxy_get_status(&mut code, &mut out, &mut size) })?;
        Ok((code, take(out, size).map(text)))
    }
}

/// The callbacks a root context and a stream context answer, with the SDK's names; every
/// method has the SDK's default.
pub(crate) mod traits {
    use super::types::{Action, ContextType};

    /// What every context answers.
    pub(crate) trait Context {
        /// A gRPC call this context started ended (`status_code` 0: success).
        fn on_grpc_call_response(&mut self, _token_id: u32, _status_code: u32, _size: usize) {}
    }

    /// A plugin configuration's context, one per configuration per VM.
    pub(crate) trait RootContext: Context {
        fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
            true
        }
        fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
            true
        }
        fn on_tick(&mut self) {}
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            None
        }
        fn get_type(&self) -> Option<ContextType> {
            None
        }
    }

    /// One HTTP stream's context.
    pub(crate) trait HttpContext: Context {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
            Action::Continue
        }
        fn on_http_response_headers(
            &mut self,
            _num_headers: usize,
            _end_of_stream: bool,
        ) -> Action {
            Action::Continue
        }
        fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
        fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
            Action::Continue
        }
        fn on_log(&mut self) {}
    }
}

use traits::{HttpContext, RootContext};
use types::{Action, ContextType, LogLevel};

/// Makes a root context for each plugin configuration.
type NewRoot = fn(u32) -> Box<dyn RootContext>;

/// Context ids are the proxy's own counter, not attacker input, so they need no keyed hash:
/// one multiplication (Fibonacci hashing) instead of SipHash on every callback.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// The VM's contexts by id. Envoy runs one VM per worker thread and calls it from that thread
/// only, so this is a thread local without locks.
#[derive(Default)]
struct Contexts {
    new_root: Option<NewRoot>,
    roots: IdMap<Box<dyn RootContext>>,
    streams: IdMap<Box<dyn HttpContext>>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
    /// gRPC answers that arrived while the contexts were in use (a call the proxy failed
    /// inline, inside `dispatch_grpc_call`): root, token, status; handed to their root as soon
    /// as the callback that was running returns.
    static DEFERRED: RefCell<Vec<(u32, u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Sets what makes root contexts (once, from the entry point).
pub(crate) fn set_root_context(new_root: NewRoot) {
    CONTEXTS.with(|contexts| {
        if let Ok(mut contexts) = contexts.try_borrow_mut() {
            contexts.new_root = Some(new_root);
        }
    });
}

/// Logs a panic's message at `Critical` before the VM traps (the SDK did the same), so that a
/// dead VM says why in the proxy's log.
pub(crate) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &info.to_string());
    }));
}

/// Runs `f` on the contexts; `None` when they are in use (a callback inside a callback).
fn with<R>(f: impl FnOnce(&mut Contexts) -> R) -> Option<R> {
    let result = CONTEXTS.with(|contexts| {
        let mut contexts = contexts.try_borrow_mut().ok()?;
        Some(f(&mut contexts))
    });
    drain_deferred();
    result
}

fn drain_deferred() {
    while let Some((root_id, token, status)) =
        DEFERRED.with(|deferred| deferred.try_borrow_mut().ok()?.pop())
    {
        let answered = CONTEXTS.with(|contexts| {
            let mut contexts = contexts.try_borrow_mut().ok()?;
            if let Some(root) = contexts.roots.get_mut(&root_id) {
                root.on_grpc_call_response(token, status, 0);
            }
            Some(())
        });
        if answered.is_none() {
            // Still inside a callback: put it back for when that one returns.
            DEFERRED.with(|deferred| {
                if let Ok(mut deferred) = deferred.try_borrow_mut() {
                    deferred.push((root_id, token, status));
                }
            });
            return;
        }
    }
}

fn stream(context_id: u32, f: impl FnOnce(&mut dyn HttpContext) -> Action) -> u32 {
    with(|contexts| {
        contexts
            .streams
            .get_mut(&context_id)
            .map_or(Action::Continue, |stream| f(stream.as_mut()))
    })
    .unwrap_or(Action::Continue) as u32
}

// The callbacks the filter exports. The proxy (proxy-wasm-cpp-host) calls a callback only when
// the module exports it; not exported, because the filter has nothing to do there:
// `proxy_on_done` (the proxy then goes straight on to `proxy_on_delete`), the network-filter,
// HTTP-call, shared-queue, gRPC-stream-metadata and foreign-function callbacks.

/// A root context (`root_context_id` 0) or a stream context of root `root_context_id`.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    with(|contexts| {
        if root_context_id == 0 {
            if let Some(new_root) = contexts.new_root {
                contexts.roots.insert(context_id, new_root(context_id));
            }
        } else if let Some(stream) = contexts
            .roots
            .get(&root_context_id)
            .filter(|root| root.get_type() == Some(ContextType::HttpContext))
            .and_then(|root| root.create_http_context(context_id))
        {
            contexts.streams.insert(context_id, stream);
        }
    });
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_vm_start(context_id: u32, vm_configuration_size: usize) -> u32 {
    with(|contexts| {
        contexts
            .roots
            .get_mut(&context_id)
            .is_some_and(|root| root.on_vm_start(vm_configuration_size))
    })
    .is_some_and(|started| started)
    .into()
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_configure(
    context_id: u32,
    plugin_configuration_size: usize,
) -> u32 {
    with(|contexts| {
        contexts
            .roots
            .get_mut(&context_id)
            .is_some_and(|root| root.on_configure(plugin_configuration_size))
    })
    .is_some_and(|configured| configured)
    .into()
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_tick(context_id: u32) {
    with(|contexts| {
        if let Some(root) = contexts.roots.get_mut(&context_id) {
            root.on_tick();
        }
    });
}

/// A unary gRPC call's response arrived: the call succeeded.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_grpc_receive(context_id: u32, token: u32, response_size: usize) {
    grpc_answer(context_id, token, 0, response_size);
}

/// A gRPC call ended without a response: its status.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_grpc_close(context_id: u32, token: u32, status_code: u32) {
    grpc_answer(context_id, token, status_code, 0);
}

fn grpc_answer(context_id: u32, token: u32, status_code: u32, size: usize) {
    let handled = with(|contexts| {
        if let Some(root) = contexts.roots.get_mut(&context_id) {
            root.on_grpc_call_response(token, status_code, size);
        }
    });
    if handled.is_none() {
        DEFERRED.with(|deferred| {
            if let Ok(mut deferred) = deferred.try_borrow_mut() {
                deferred.push((context_id, token, status_code));
            }
        });
    }
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_request_headers(
    context_id: u32,
    headers: usize,
    end: u32,
) -> u32 {
    stream(context_id, |s| s.on_http_request_headers(headers, end != 0))
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_request_body(context_id: u32, size: usize, end: u32) -> u32 {
    stream(context_id, |s| s.on_http_request_body(size, end != 0))
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_request_trailers(context_id: u32, trailers: usize) -> u32 {
    stream(context_id, |s| s.on_http_request_trailers(trailers))
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_response_headers(
    context_id: u32,
    headers: usize,
    end: u32,
) -> u32 {
    stream(context_id, |s| {
        s.on_http_response_headers(headers, end != 0)
    })
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_response_body(context_id: u32, size: usize, end: u32) -> u32 {
    stream(context_id, |s| s.on_http_response_body(size, end != 0))
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_response_trailers(context_id: u32, trailers: usize) -> u32 {
    stream(context_id, |s| s.on_http_response_trailers(trailers))
}

#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_log(context_id: u32) {
    with(|contexts| {
        if let Some(stream) = contexts.streams.get_mut(&context_id) {
            stream.on_log();
        }
    });
}

/// The proxy is done with a context: a stream at its end, a root at shutdown.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn proxy_on_delete(context_id: u32) {
    with(|contexts| {
        if contexts.streams.remove(&context_id).is_none() {
            contexts.roots.remove(&context_id);
        }
    });
}
