//! Where the encoder runs.

use candle_core::Device;

use crate::error::{ClassifierError, Result};

/// `--device cpu|cuda|auto`. `auto` takes CUDA when the binary was built with
/// the `cuda` feature and a GPU answers, else the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "auto" => Ok(DeviceChoice::Auto),
            other => Err(format!(
                "unknown device `{other}` (expected cpu, cuda or auto)"
            )),
        }
    }
}

/// Which implementation computes the encoder on the CPU. `native` (the
/// default) is Pointsman's own forward pass; `candle` is the reference it
/// is tested against, and what runs models the native one does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Native(Precision),
    Candle,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::Native(Precision::F32)
    }
}

/// Number format of the native encoder's dense products (the four Linear
/// layers of every transformer layer, ~90% of the arithmetic). bf16 needs
/// AVX-512 BF16; int8 AVX-512 VNNI or AVX2 with FMA (the same results on
/// either); elsewhere the encoder warns and uses f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Inputs rounded to bf16, f32 sums.
    Bf16,
    /// Dynamic int8: per-column weight scales, per-row activation scales.
    Int8,
}

impl Precision {
    /// The command line's CPU default: int8 where this CPU runs an int8
    /// kernel (AVX-512 F, BW, VL and VNNI, or AVX2 and FMA), f32
    /// elsewhere. int8 is about twice as fast as f32 with VNNI and 1.3 to
    /// 1.5 times with AVX2 (docs/PERFORMANCE.md), and keeps held-out task
    /// accuracy within 0.5 points of f32 (docs/EVALUATION.md, "int8 as the
    /// CPU default"); both kernels give the same bits.
    pub fn cpu_default() -> Precision {
        if crate::native::int8_supported() {
            Precision::Int8
        } else {
            Precision::F32
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            other => Err(format!(
                "unknown precision `{other}` (expected f32, bf16 or int8)"
            )),
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "candle" => Ok(Engine::Candle),
            "native" => Ok(Engine::Native(Precision::F32)),
            other => match other.strip_prefix("native-").map(str::parse) {
                Some(Ok(precision)) => Ok(Engine::Native(precision)),
                _ => Err(format!(
                    "unknown engine `{other}` (expected native, native-bf16, native-int8 or candle)"
                )),
            },
        }
    }
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => cuda(),
            DeviceChoice::Auto => Ok(cuda().unwrap_or(Device::Cpu)),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    Device::new_cuda(0).map_err(|e| ClassifierError::Device(format!("CUDA device 0: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    Err(ClassifierError::Device(
        "this binary was built without CUDA; rebuild with `cargo build --release --features cuda`"
            .into(),
    ))
}
