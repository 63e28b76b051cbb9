//! The CUDA backend: our kernels (`kernels/*.cu`) compiled by NVRTC at first use (PTX cached on disk) and launched through cudarc.
//!
//! Buffers are plain device allocations (`CudaSlice<f32>`, no managed
//! memory). The network allocates every activation, gradient and parameter
//! buffer once per run and reuses it across steps, the trainer writes each
//! batch's labels into one buffer, and the backend keeps its upload
//! buffers for images and crops (grown once), so a training step allocates
//! nothing. Work is queued on one stream; the host waits only in
//! [`Backend::download`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx};
use sha2::Digest;

use super::backend::{
    BResult, Backend, BackendError, BnParams, ChanShape, ConvShape, CopyShape, Crop, PoolShape,
    RmsProp,
};

/// The kernel sources, compiled into the binary: (file, source, kernels).
pub const SOURCES: [(&str, &str, &[&str]); 4] = [
    (
        "conv.cu",
        include_str!("../../kernels/conv.cu"),
        &[
            "conv_fwd_f32",
            "conv_bwd_data_f32",
            "conv_bwd_filter_f32",
            "conv1x1_fwd_f32",
            "conv1x1_bwd_data_f32",
            "conv1x1_bwd_filter_f32",
            "conv3x3_fwd_f32",
            "conv3x3_bwd_data_f32",
            "conv3x3_bwd_filter_f32",
        ],
    ),
    (
        "bn.cu",
        include_str!("../../kernels/bn.cu"),
        &[
            "bn_apply_fwd_f32",
            "bn_partial_fwd_f32",
            "bn_finalize_fwd_f32",
            "bn_dx_bwd_f32",
        ],
    ),
    (
        "pool.cu",
        include_str!("../../kernels/pool.cu"),
        &[
            "maxpool_fwd_f32",
            "maxpool_bwd_f32",
            "avgpool_fwd_f32",
            "avgpool_bwd_f32",
        ],
    ),
    (
        "misc.cu",
        include_str!("../../kernels/misc.cu"),
        &[
            "fill_fwd_f32",
            "copy_channels_fwd_f32",
            "dense_fwd_f32",
            "dense_bwd_f32",
            "softmax_xent_fwd_f32",
            "count_correct_fwd_f32",
            "half_sum_squares_fwd_f32",
            "rmsprop_fwd_f32",
            "load_images_fwd_f32",
        ],
    ),
];

fn dev(what: &str, e: impl std::fmt::Debug) -> BackendError {
    BackendError::Device {
        what: what.to_string(),
        message: format!("{e:?}"),
    }
}

/// Whether the NVRTC library can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether a CUDA driver can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Where compiled PTX is cached: `$NASBENCH_CACHE/ptx`, else
/// `$XDG_CACHE_HOME/nasbench/ptx`, else `~/.cache/nasbench/ptx`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("NASBENCH_CACHE") {
        return Some(PathBuf::from(d).join("ptx"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("nasbench").join("ptx"))
}

/// Compiles one kernel file to PTX for `arch` (`compute_80`, `compute_90`,
/// ...) with NVRTC, reusing the on-disk cache ([`cache_dir`]) when the
/// source and target are unchanged.
pub fn compile(file: &str, src: &str, arch: &'static str) -> BResult<String> {
    compile_cached(file, src, arch, cache_dir().as_deref())
}

/// The first line of a cached PTX file: this mark, then the SHA-256 of the
/// rest of the file.
const PTX_MARK: &str = "// nasbench-ptx sha256 ";

fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The PTX of a cache file if its checksum line matches its body.
fn read_cached(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let (first, body) = text.split_once('\n')?;
    (first.strip_prefix(PTX_MARK)? == sha256_hex(body)).then(|| body.to_string())
}

/// [`compile`] with the cache in `cache` (none: always compile). A cache
/// file that does not match its checksum (a torn write, another version,
/// a bit flip) is compiled again and replaced; files are written under a
/// unique temporary name and renamed, so concurrent workers sharing a home
/// never read each other's half-written files.
pub fn compile_cached(
    file: &str,
    src: &str,
    arch: &'static str,
    cache: Option<&Path>,
) -> BResult<String> {
    let digest = sha2::Sha256::digest(format!("{arch}\n{src}").as_bytes());
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let cached =
        cache.map(|d| d.join(format!("{}-{arch}-{key}.ptx", file.trim_end_matches(".cu"))));
    if let Some(text) = cached.as_deref().and_then(read_cached) {
        return Ok(text);
    }
    if !nvrtc_present() {
        return Err(BackendError::NoDriver(
            "libnvrtc not found (and no cached PTX); install nvidia-cuda-nvrtc-cu12 and add its lib folder to LD_LIBRARY_PATH".into(),
        ));
    }
    let opts = CompileOptions {
        arch: Some(arch),
        options: vec!["--std=c++17".into(), "-lineinfo".into()],
        name: Some(file.to_string()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts)
        .map_err(|e| dev(&format!("compiling {file} for {arch}"), e))?;
    let text = ptx.to_src();
    if let Some(p) = cached
        && let Some(dir) = p.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        // A cache that cannot be written only costs a compile next time.
        let _ = crate::output::write_atomically(&p, |f| {
            std::io::Write::write_all(
                f,
                format!("{PTX_MARK}{}\n{text}", sha256_hex(&text)).as_bytes(),
            )
            .map_err(|source| crate::output::ExportError::Io {
                path: p.display().to_string(),
                source,
            })
        });
    }
    Ok(text)
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ConvArgs {
    n: i32,
    cin: i32,
    cout: i32,
    h: i32,
    w: i32,
    k: i32,
    exact: i32,
}

// SAFETY: plain #[repr(C)] struct of i32, the layout of `struct ConvArgs`
// in kernels/conv.cu.
unsafe impl DeviceRepr for ConvArgs {}

#[repr(C)]
#[derive(Clone, Copy)]
struct PoolArgs {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    k: i32,
    stride: i32,
    oh: i32,
    ow: i32,
    ph: i32,
    pw: i32,
}

// SAFETY: plain #[repr(C)] struct of i32, the layout of `struct PoolArgs`
// in kernels/pool.cu.
unsafe impl DeviceRepr for PoolArgs {}

/// The CUDA backend on one device.
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: HashMap<&'static str, CudaFunction>,
    images: Option<CudaSlice<u8>>,
    crops: Option<CudaSlice<i32>>,
    sms: u32,
    exact_convs: bool,
    profile: Option<HashMap<&'static str, (f64, u64)>>,
    partials: Option<CudaSlice<f32>>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cuda")
            .field("device", &self.ctx.name().ok())
            .finish()
    }
}

/// Elementwise launch: 256 threads, enough blocks to fill the device.
fn grid(total: usize, sms: u32) -> LaunchConfig {
    let blocks = total.div_ceil(256).clamp(1, (sms as usize) * 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches `$kernel` with the listed arguments.
macro_rules! launch {
    ($self:ident, $kernel:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let name: &'static str = $kernel;
        let cfg: LaunchConfig = $cfg;
        let started = if $self.profile.is_some() {
            $self.stream.synchronize().map_err(|e| dev(name, e))?;
            Some(std::time::Instant::now())
        } else {
            None
        };
        let f = $self.kernels.get(name).ok_or(BackendError::Shape(name))?;
        let mut b = $self.stream.launch_builder(f);
        $( b.arg($arg); )*
        // SAFETY: the arguments match the kernel's parameter list in
        // kernels/*.cu in number, order and type (device buffers, i32,
        // i64, f32 and the #[repr(C)] structs above); every buffer's length
        // was checked against the shape before this launch, and the kernels
        // bound every access by the shape they are given.
        let launched = unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| dev(name, e));
        if let (Some(t), Some(p)) = (started, $self.profile.as_mut()) {
            $self.stream.synchronize().map_err(|e| dev(name, e))?;
            let e = p.entry(name).or_insert((0.0, 0));
            e.0 += t.elapsed().as_secs_f64() * 1e3;
            e.1 += 1;
        }
        launched
    }};
}

fn check(ok: bool, what: &'static str) -> BResult {
    if ok {
        Ok(())
    } else {
        Err(BackendError::Shape(what))
    }
}

impl Cuda {
    /// Opens device `ordinal`, compiling (or loading cached) PTX for its
    /// architecture. "no CUDA driver found" when there is none.
    pub fn new(ordinal: usize) -> BResult<Cuda> {
        if !driver_present() {
            return Err(BackendError::NoDriver("libcuda could not be loaded".into()));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| dev("opening the device", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| dev("reading the compute capability", e))?;
        let arch: &'static str = match (major, minor) {
            (9, _) => "compute_90",
            (8, 9) => "compute_89",
            (8, 6) => "compute_86",
            (8, _) => "compute_80",
            (m, _) if m > 9 => "compute_90",
            _ => {
                return Err(BackendError::Device {
                    what: "opening the device".into(),
                    message: format!(
                        "compute capability {major}.{minor}: the TF32 tensor-core kernels need 8.0 or newer"
                    ),
                });
            }
        };
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| dev("reading the SM count", e))? as u32;
        let mut kernels = HashMap::new();
        for (file, src, names) in SOURCES {
            let ptx = compile(file, src, arch)?;
            let module = ctx
                .load_module(Ptx::from_src(ptx))
                .map_err(|e| dev(&format!("loading {file}"), e))?;
            for &name in names {
                let f = module
                    .load_function(name)
                    .map_err(|e| dev(&format!("loading {name}"), e))?;
                kernels.insert(name, f);
            }
        }
        let stream = ctx.default_stream();
        Ok(Cuda {
            ctx,
            stream,
            kernels,
            images: None,
            crops: None,
            sms,
            exact_convs: false,
            profile: None,
            partials: None,
        })
    }

    /// Convolutions with full f32 FMAs instead of TF32 tensor cores (for
    /// step-by-step comparisons with the CPU reference).
    pub fn set_exact_convs(&mut self, exact: bool) {
        self.exact_convs = exact;
    }

    /// Times every launch from now on (synchronizing around each: for
    /// finding where a step's time goes, not for speed).
    pub fn enable_profile(&mut self) {
        self.profile = Some(HashMap::new());
    }

    /// Milliseconds and launches per kernel since [`Cuda::enable_profile`],
    /// most expensive first.
    pub fn profile_report(&self) -> String {
        let Some(p) = &self.profile else {
            return String::new();
        };
        let mut rows: Vec<_> = p.iter().collect();
        rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        let total: f64 = rows.iter().map(|r| r.1.0).sum();
        let mut out = format!("kernel time, {total:.1} ms in all:\n");
        for (name, (ms, count)) in rows {
            out.push_str(&format!(
                "  {name:<28} {ms:>9.2} ms {:>5.1}% {count:>7} launches\n",
                100.0 * ms / total.max(1e-9)
            ));
        }
        out
    }

    /// Blocks per channel for the batch-norm reductions (about sixteen
    /// blocks per SM in all, at least 1024 values per block: each thread
    /// has one load in flight, so it takes that many to cover DRAM
    /// latency), and a scratch buffer for their partial sums.
    fn bn_slices(&mut self, s: ChanShape) -> BResult<u32> {
        let by_sms = (16 * self.sms as usize).div_ceil(s.c.max(1));
        let by_size = (s.n * s.hw / 1024).max(1);
        let slices = by_sms.min(by_size).clamp(1, 256);
        let need = s.c * slices * 2;
        if self.partials.as_ref().is_none_or(|p| p.len() < need) {
            self.partials = Some(self.zeros(need)?);
        }
        Ok(slices as u32)
    }

    fn conv_args(&self, s: ConvShape) -> ConvArgs {
        ConvArgs {
            exact: i32::from(self.exact_convs),
            n: s.n as i32,
            cin: s.cin as i32,
            cout: s.cout as i32,
            h: s.h as i32,
            w: s.w as i32,
            k: s.k as i32,
        }
    }

    fn pool_args(s: PoolShape) -> PoolArgs {
        let (oh, ow) = s.out_hw();
        let (ph, pw) = s.pad();
        PoolArgs {
            n: s.n as i32,
            c: s.c as i32,
            h: s.h as i32,
            w: s.w as i32,
            k: s.k as i32,
            stride: s.stride as i32,
            oh: oh as i32,
            ow: ow as i32,
            ph: ph as i32,
            pw: pw as i32,
        }
    }
}

/// Launches of the batch-norm reductions: `slices` blocks per channel, and
/// one thread per channel for the finalize.
fn bn_configs(slices: u32, c: usize) -> (LaunchConfig, LaunchConfig) {
    (
        LaunchConfig {
            grid_dim: (slices, c as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        },
        LaunchConfig {
            grid_dim: (c.div_ceil(128) as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        },
    )
}

/// The kernel of a convolution pass for kernel size `k`: `[any size, 1x1,
/// 3x3]`.
fn conv_kernel(k: usize, [any, k1, k3]: [&'static str; 3]) -> &'static str {
    match k {
        1 => k1,
        3 => k3,
        _ => any,
    }
}

/// Forward and data-gradient convolutions: one block per 64x64 tile of
/// (channels, pixels), channel tiles fastest (see kernels/conv.cu).
fn conv_grid(channels: usize, pixels: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((channels.div_ceil(64) * pixels.div_ceil(64)) as u32, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn tile_grid(n: usize, m: usize, z: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(64) as u32, m.div_ceil(64) as u32, z as u32),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Backend for Cuda {
    type Buf = CudaSlice<f32>;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "CUDA device".into())
    }

    fn zeros(&mut self, len: usize) -> BResult<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| dev("allocating", e))
    }

    fn upload(&mut self, data: &[f32]) -> BResult<CudaSlice<f32>> {
        if data.is_empty() {
            return self.zeros(1);
        }
        self.stream
            .clone_htod(data)
            .map_err(|e| dev("uploading", e))
    }

    fn write(&mut self, buf: &mut CudaSlice<f32>, data: &[f32]) -> BResult {
        check(buf.len() >= data.len(), "write")?;
        self.stream
            .memcpy_htod(data, &mut buf.slice_mut(..data.len()))
            .map_err(|e| dev("uploading", e))
    }

    fn download(&mut self, buf: &CudaSlice<f32>) -> BResult<Vec<f32>> {
        self.stream
            .clone_dtoh(buf)
            .map_err(|e| dev("downloading", e))
    }

    fn fill(&mut self, buf: &mut CudaSlice<f32>, value: f32) -> BResult {
        let total = buf.len() as i64;
        launch!(self, "fill_fwd_f32", grid(buf.len(), self.sms); buf, &total, &value)
    }

    fn conv_fwd(
        &mut self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        s: ConvShape,
    ) -> BResult {
        check(
            x.len() >= s.x_len() && w.len() >= s.w_len() && y.len() >= s.y_len(),
            "conv_fwd",
        )?;
        let a = self.conv_args(s);
        launch!(self, conv_kernel(s.k, ["conv_fwd_f32", "conv1x1_fwd_f32", "conv3x3_fwd_f32"]), conv_grid(s.cout, s.n * s.h * s.w); x, w, y, &a)
    }

    fn conv_bwd_data(
        &mut self,
        dy: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        s: ConvShape,
        accumulate: bool,
    ) -> BResult {
        check(
            dx.len() >= s.x_len() && w.len() >= s.w_len() && dy.len() >= s.y_len(),
            "conv_bwd_data",
        )?;
        let a = self.conv_args(s);
        let acc = i32::from(accumulate);
        launch!(self, conv_kernel(s.k, ["conv_bwd_data_f32", "conv1x1_bwd_data_f32", "conv3x3_bwd_data_f32"]), conv_grid(s.cin, s.n * s.h * s.w); dy, w, dx, &a, &acc)
    }

    fn conv_bwd_filter(
        &mut self,
        x: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dw: &mut CudaSlice<f32>,
        s: ConvShape,
    ) -> BResult {
        check(
            x.len() >= s.x_len() && dw.len() >= s.w_len() && dy.len() >= s.y_len(),
            "conv_bwd_filter",
        )?;
        self.fill(dw, 0.0)?;
        let k = s.n * s.h * s.w;
        let n = s.cin * s.k * s.k;
        let base = n.div_ceil(64) * s.cout.div_ceil(64);
        // Enough blocks for two waves of four per SM (what the registers
        // allow), each over at least 256 pixels.
        let splits = (8 * self.sms as usize)
            .div_ceil(base)
            .clamp(1, k.div_ceil(256).max(1));
        let chunk = k.div_ceil(splits).div_ceil(32) * 32;
        let splits = k.div_ceil(chunk);
        let a = self.conv_args(s);
        let chunk = chunk as i32;
        launch!(self, conv_kernel(s.k, ["conv_bwd_filter_f32", "conv1x1_bwd_filter_f32", "conv3x3_bwd_filter_f32"]), tile_grid(n, s.cout, splits); x, dy, dw, &a, &chunk)
    }

    fn bn_train_fwd(
        &mut self,
        x: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        beta: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        save_mean: &mut CudaSlice<f32>,
        save_invstd: &mut CudaSlice<f32>,
        running_mean: &mut CudaSlice<f32>,
        running_var: &mut CudaSlice<f32>,
        s: ChanShape,
        p: BnParams,
        relu: bool,
    ) -> BResult {
        check(
            x.len() >= s.len()
                && y.len() >= s.len()
                && gamma.len() >= s.c
                && save_mean.len() >= s.c,
            "bn_train_fwd",
        )?;
        let (n, c, hw) = (s.n as i32, s.c as i32, s.hw as i32);
        let slices = self.bn_slices(s)?;
        let mut part = self
            .partials
            .take()
            .ok_or(BackendError::Shape("bn partials"))?;
        let (reduce, fin) = bn_configs(slices, s.c);
        let (null, count, sl, zero) = (0u64, (s.n * s.hw) as i32, slices as i32, 0i32);
        let result = (|| {
            for what in [0i32, 1] {
                launch!(self, "bn_partial_fwd_f32", reduce; x, &null, &null, &*save_mean, &null, &mut part,
                        &n, &c, &hw, &what, &zero)?;
                launch!(self, "bn_finalize_fwd_f32", fin; &part, &sl, &mut *save_mean, &mut *save_invstd,
                        &mut *running_mean, &mut *running_var, &null, &null, &c, &count, &p.momentum, &p.eps, &what)?;
            }
            Ok(())
        })();
        self.partials = Some(part);
        result?;
        let total = s.len() as i64;
        let null = 0u64;
        let r = i32::from(relu);
        launch!(self, "bn_apply_fwd_f32", grid(s.len(), self.sms); x, gamma, beta, &*save_mean, &*save_invstd, &null, y,
                &total, &c, &hw, &p.eps, &r)
    }

    fn bn_eval_fwd(
        &mut self,
        x: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        beta: &CudaSlice<f32>,
        running_mean: &CudaSlice<f32>,
        running_var: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        s: ChanShape,
        p: BnParams,
        relu: bool,
    ) -> BResult {
        check(
            x.len() >= s.len() && y.len() >= s.len() && running_var.len() >= s.c,
            "bn_eval_fwd",
        )?;
        let (c, hw) = (s.c as i32, s.hw as i32);
        let total = s.len() as i64;
        let null = 0u64;
        let r = i32::from(relu);
        launch!(self, "bn_apply_fwd_f32", grid(s.len(), self.sms); x, gamma, beta, running_mean, &null, running_var, y,
                &total, &c, &hw, &p.eps, &r)
    }

    fn bn_bwd(
        &mut self,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        save_mean: &CudaSlice<f32>,
        save_invstd: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        dgamma: &mut CudaSlice<f32>,
        dbeta: &mut CudaSlice<f32>,
        s: ChanShape,
        relu: bool,
    ) -> BResult {
        check(
            x.len() >= s.len() && dy.len() >= s.len() && dx.len() >= s.len() && dgamma.len() >= s.c,
            "bn_bwd",
        )?;
        let (n, c, hw) = (s.n as i32, s.c as i32, s.hw as i32);
        let r = i32::from(relu);
        let slices = self.bn_slices(s)?;
        let mut part = self
            .partials
            .take()
            .ok_or(BackendError::Shape("bn partials"))?;
        let (reduce, fin) = bn_configs(slices, s.c);
        let (null, count, sl, two, zero) = (0u64, (s.n * s.hw) as i32, slices as i32, 2i32, 0.0f32);
        let total = s.len() as i64;
        let result = (|| {
            launch!(self, "bn_partial_fwd_f32", reduce; x, y, dy, save_mean, save_invstd, &mut part,
                    &n, &c, &hw, &two, &r)?;
            launch!(self, "bn_finalize_fwd_f32", fin; &part, &sl, &null, &null, &null, &null,
                    &mut *dgamma, &mut *dbeta, &c, &count, &zero, &zero, &two)?;
            launch!(self, "bn_dx_bwd_f32", grid(s.len(), self.sms); x, y, dy, gamma, save_mean, save_invstd,
                    &*dgamma, &*dbeta, dx, &total, &c, &hw, &count, &r)
        })();
        self.partials = Some(part);
        result
    }

    fn maxpool_fwd(&mut self, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>, s: PoolShape) -> BResult {
        check(x.len() >= s.x_len() && y.len() >= s.y_len(), "maxpool_fwd")?;
        let a = Self::pool_args(s);
        launch!(self, "maxpool_fwd_f32", grid(s.y_len(), self.sms); x, y, &a)
    }

    fn maxpool_bwd(
        &mut self,
        x: &CudaSlice<f32>,
        y: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        s: PoolShape,
        accumulate: bool,
    ) -> BResult {
        check(
            x.len() >= s.x_len()
                && dx.len() >= s.x_len()
                && y.len() >= s.y_len()
                && dy.len() >= s.y_len(),
            "maxpool_bwd",
        )?;
        let a = Self::pool_args(s);
        let acc = i32::from(accumulate);
        launch!(self, "maxpool_bwd_f32", grid(s.x_len(), self.sms); x, y, dy, dx, &a, &acc)
    }

    fn copy_channels(
        &mut self,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
        s: CopyShape,
        accumulate: bool,
    ) -> BResult {
        check(
            src.len() >= s.n * s.src_c * s.hw
                && dst.len() >= s.n * s.dst_c * s.hw
                && s.src_off + s.count <= s.src_c
                && s.dst_off + s.count <= s.dst_c,
            "copy_channels",
        )?;
        let v = [s.n, s.hw, s.src_c, s.src_off, s.dst_c, s.dst_off, s.count].map(|x| x as i32);
        let acc = i32::from(accumulate);
        launch!(self, "copy_channels_fwd_f32", grid(s.n * s.count * s.hw, self.sms); src, dst,
                &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &acc)
    }

    fn avgpool_fwd(&mut self, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>, s: ChanShape) -> BResult {
        check(x.len() >= s.len() && y.len() >= s.n * s.c, "avgpool_fwd")?;
        let planes = (s.n * s.c) as i32;
        let hw = s.hw as i32;
        let cfg = LaunchConfig {
            grid_dim: ((s.n * s.c * 32).div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "avgpool_fwd_f32", cfg; x, y, &planes, &hw)
    }

    fn avgpool_bwd(
        &mut self,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        s: ChanShape,
        accumulate: bool,
    ) -> BResult {
        check(dx.len() >= s.len() && dy.len() >= s.n * s.c, "avgpool_bwd")?;
        let total = s.len() as i64;
        let hw = s.hw as i32;
        let acc = i32::from(accumulate);
        launch!(self, "avgpool_bwd_f32", grid(s.len(), self.sms); dy, dx, &total, &hw, &acc)
    }

    fn dense_fwd(
        &mut self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        n: usize,
        inp: usize,
        out: usize,
    ) -> BResult {
        check(
            x.len() >= n * inp && w.len() >= inp * out && b.len() >= out && y.len() >= n * out,
            "dense_fwd",
        )?;
        let (ni, ii, oi) = (n as i32, inp as i32, out as i32);
        launch!(self, "dense_fwd_f32", grid(n * out, self.sms); x, w, b, y, &ni, &ii, &oi)
    }

    fn dense_bwd(
        &mut self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        dw: &mut CudaSlice<f32>,
        db: &mut CudaSlice<f32>,
        n: usize,
        inp: usize,
        out: usize,
    ) -> BResult {
        check(
            x.len() >= n * inp && dx.len() >= n * inp && dw.len() >= inp * out && db.len() >= out,
            "dense_bwd",
        )?;
        let (ni, ii, oi) = (n as i32, inp as i32, out as i32);
        launch!(self, "dense_bwd_f32", grid(n * inp + inp * out + out, self.sms); x, w, dy, dx, dw, db, &ni, &ii, &oi)
    }

    fn softmax_xent(
        &mut self,
        logits: &CudaSlice<f32>,
        labels: &CudaSlice<f32>,
        dlogits: &mut CudaSlice<f32>,
        stats: &mut CudaSlice<f32>,
        n: usize,
        k: usize,
    ) -> BResult {
        check(
            logits.len() >= n * k
                && labels.len() >= n
                && dlogits.len() >= n * k
                && stats.len() >= 2,
            "softmax_xent",
        )?;
        let (ni, ki) = (n as i32, k as i32);
        launch!(self, "softmax_xent_fwd_f32", grid(n, self.sms); logits, labels, dlogits, stats, &ni, &ki)
    }

    fn count_correct(
        &mut self,
        logits: &CudaSlice<f32>,
        labels: &CudaSlice<f32>,
        stats: &mut CudaSlice<f32>,
        n: usize,
        k: usize,
    ) -> BResult {
        check(
            logits.len() >= n * k && labels.len() >= n && stats.len() >= 2,
            "count_correct",
        )?;
        let (ni, ki) = (n as i32, k as i32);
        launch!(self, "count_correct_fwd_f32", grid(n, self.sms); logits, labels, stats, &ni, &ki)
    }

    fn add_half_sum_squares(&mut self, w: &CudaSlice<f32>, acc: &mut CudaSlice<f32>) -> BResult {
        check(!acc.is_empty(), "add_half_sum_squares")?;
        let total = w.len() as i64;
        launch!(self, "half_sum_squares_fwd_f32", grid(w.len(), self.sms); w, &total, acc)
    }

    fn rmsprop(
        &mut self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        ms: &mut CudaSlice<f32>,
        mom: &mut CudaSlice<f32>,
        p: RmsProp,
    ) -> BResult {
        check(
            g.len() >= w.len() && ms.len() >= w.len() && mom.len() >= w.len(),
            "rmsprop",
        )?;
        let total = w.len() as i64;
        launch!(self, "rmsprop_fwd_f32", grid(w.len(), self.sms); w, g, ms, mom, &total,
                &p.lr, &p.decay, &p.momentum, &p.eps, &p.weight_decay)
    }

    fn load_images(
        &mut self,
        images: &[u8],
        crops: Option<&[Crop]>,
        out: &mut CudaSlice<f32>,
        n: usize,
        h: usize,
        w: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> BResult {
        check(
            images.len() == n * 3 * h * w
                && out.len() >= n * 3 * h * w
                && crops.is_none_or(|c| c.len() == n),
            "load_images",
        )?;
        if self.images.as_ref().is_none_or(|b| b.len() < images.len()) {
            self.images = Some(
                self.stream
                    .alloc_zeros::<u8>(images.len().max(1))
                    .map_err(|e| dev("allocating", e))?,
            );
        }
        let Some(img) = self.images.as_mut() else {
            return Err(BackendError::Shape("load_images"));
        };
        self.stream
            .memcpy_htod(images, &mut img.slice_mut(..images.len()))
            .map_err(|e| dev("uploading images", e))?;
        let crop_ints: Option<Vec<i32>> = crops.map(|c| {
            c.iter()
                .flat_map(|c| [i32::from(c.dy), i32::from(c.dx), i32::from(c.flip)])
                .collect()
        });
        if let Some(ints) = &crop_ints {
            if self.crops.as_ref().is_none_or(|b| b.len() < ints.len()) {
                self.crops = Some(
                    self.stream
                        .alloc_zeros::<i32>(ints.len().max(1))
                        .map_err(|e| dev("allocating", e))?,
                );
            }
            if let Some(cb) = self.crops.as_mut() {
                self.stream
                    .memcpy_htod(ints, &mut cb.slice_mut(..ints.len()))
                    .map_err(|e| dev("uploading crops", e))?;
            }
        }
        let (ni, hi, wi) = (n as i32, h as i32, w as i32);
        let cfg = grid(n * 3 * h * w, self.sms);
        let img = self
            .images
            .as_ref()
            .ok_or(BackendError::Shape("load_images"))?;
        match (&crop_ints, self.crops.as_ref()) {
            (Some(_), Some(cb)) => {
                launch!(self, "load_images_fwd_f32", cfg; img, cb, out, &ni, &hi, &wi,
                                           &mean[0], &mean[1], &mean[2], &std[0], &std[1], &std[2])
            }
            _ => {
                let null = 0u64;
                launch!(self, "load_images_fwd_f32", cfg; img, &null, out, &ni, &hi, &wi,
                        &mean[0], &mean[1], &mean[2], &std[0], &std[1], &std[2])
            }
        }
    }
}
