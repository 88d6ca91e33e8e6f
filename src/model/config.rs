//! The shape of a vqz model: everything needed to build the network before
//! its weights are loaded. Stored as text in the model file's metadata.

use super::ModelError;

/// Sides of an image must be multiples of this: the encoder halves them
/// twice, so one latent vector covers a 4x4 block of pixels.
pub const GRID_STRIDE: usize = 4;
/// `GRID_STRIDE` as a power of two, as the container records it.
pub const GRID_STRIDE_LOG2: u8 = 2;

/// Hyper-parameters of a VQ-VAE with residual vector quantisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// K: entries per codebook (every stage has its own codebook of K entries).
    pub codebook_size: usize,
    /// D: dimension of a latent vector and of each codebook entry.
    pub latent_dim: usize,
    /// S: residual quantiser stages; decoding the first L gives quality level L.
    pub stages: usize,
    /// Channels of the network at the latent resolution (1/4 of the image side).
    pub channels_low: usize,
    /// Channels of the network at half the image resolution.
    pub channels_high: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            codebook_size: 512,
            latent_dim: 16,
            stages: 4,
            channels_low: 64,
            channels_high: 32,
        }
    }
}

/// Bounds a model file's configuration must respect; they keep a hostile
/// model file from sizing huge allocations and match the container's limits.
pub const MAX_CODEBOOK_SIZE: usize = 4096;
pub const MAX_LATENT_DIM: usize = 256;
pub const MAX_STAGES: usize = 8;
pub const MAX_CHANNELS: usize = 1024;

impl ModelConfig {
    /// Checks every field against the bounds above.
    pub fn validate(&self) -> Result<(), ModelError> {
        let check = |name: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(ModelError::BadConfig(format!(
                    "{name} = {v}, expected {lo}..={hi}"
                )))
            } else {
                Ok(())
            }
        };
        check("codebook_size", self.codebook_size, 2, MAX_CODEBOOK_SIZE)?;
        check("latent_dim", self.latent_dim, 1, MAX_LATENT_DIM)?;
        check("stages", self.stages, 1, MAX_STAGES)?;
        check("channels_low", self.channels_low, 1, MAX_CHANNELS)?;
        check("channels_high", self.channels_high, 1, MAX_CHANNELS)?;
        Ok(())
    }

    /// `key=value` pairs separated by `;`, in a fixed order, so that the
    /// same model always serialises to the same bytes.
    pub fn to_text(&self) -> String {
        format!(
            "codebook_size={};latent_dim={};stages={};channels_low={};channels_high={};grid_stride={}",
            self.codebook_size,
            self.latent_dim,
            self.stages,
            self.channels_low,
            self.channels_high,
            GRID_STRIDE
        )
    }

    /// Parses [`ModelConfig::to_text`]; every key must be present exactly once.
    pub fn from_text(text: &str) -> Result<Self, ModelError> {
        let mut fields: [Option<usize>; 6] = [None; 6];
        const KEYS: [&str; 6] = [
            "codebook_size",
            "latent_dim",
            "stages",
            "channels_low",
            "channels_high",
            "grid_stride",
        ];
        for part in text.split(';') {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                ModelError::BadConfig(format!("expected key=value, found {part:?}"))
            })?;
            let slot = KEYS
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| ModelError::BadConfig(format!("unknown config key {key:?}")))?;
            let v: usize = value
                .parse()
                .map_err(|_| ModelError::BadConfig(format!("{key} = {value:?} is not a number")))?;
            if fields[slot].replace(v).is_some() {
                return Err(ModelError::BadConfig(format!(
                    "config key {key} appears twice"
                )));
            }
        }
        let get = |i: usize| {
            fields[i]
                .ok_or_else(|| ModelError::BadConfig(format!("config key {} missing", KEYS[i])))
        };
        if get(5)? != GRID_STRIDE {
            return Err(ModelError::BadConfig(format!(
                "grid_stride = {}, this version of vqz supports {GRID_STRIDE}",
                get(5)?
            )));
        }
        let config = Self {
            codebook_size: get(0)?,
            latent_dim: get(1)?,
            stages: get(2)?,
            channels_low: get(3)?,
            channels_high: get(4)?,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let c = ModelConfig::default();
        assert_eq!(ModelConfig::from_text(&c.to_text()).unwrap(), c);
    }

    #[test]
    fn bad_text_is_rejected() {
        for bad in [
            "",
            "codebook_size=512",
            "codebook_size=x;latent_dim=16;stages=4;channels_low=64;channels_high=32;grid_stride=4",
            "codebook_size=999999;latent_dim=16;stages=4;channels_low=64;channels_high=32;grid_stride=4",
            "codebook_size=512;latent_dim=16;stages=4;channels_low=64;channels_high=32;grid_stride=8",
            "codebook_size=512;codebook_size=512;latent_dim=16;stages=4;channels_low=64;channels_high=32;grid_stride=4",
        ] {
            assert!(ModelConfig::from_text(bad).is_err(), "{bad}");
        }
    }
}
