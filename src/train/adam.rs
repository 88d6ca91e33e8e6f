//! Adam with its state in plain tensors, so a checkpoint can store the
//! moments and a resumed run continues exactly where the killed one stopped.

use candle_core::{Result, Tensor, Var, backprop::GradStore};

/// Adam (Kingma & Ba) without weight decay.
pub struct Adam {
    vars: Vec<Var>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    /// Steps taken so far.
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    pub fn new(vars: Vec<Var>) -> Result<Self> {
        let first = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<Result<_>>()?;
        let second = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<Result<_>>()?;
        Ok(Self {
            vars,
            first,
            second,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// One update with learning rate `lr`; variables without a gradient are left alone.
    pub fn apply(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        for ((var, m), v) in self
            .vars
            .iter()
            .zip(self.first.iter_mut())
            .zip(self.second.iter_mut())
        {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // A variable's gradient still references the forward pass; the
            // moments must not, or each step's graph would stay alive.
            let g = &g.detach();
            *m = ((&*m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&*v / c2)?.sqrt()? + self.eps)?;
            let update = ((&*m / c1)? / denom)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// The moment tensors, in variable order: first moments then second.
    pub fn state(&self) -> (&[Tensor], &[Tensor]) {
        (&self.first, &self.second)
    }

    /// Restores moments saved by [`Adam::state`]; shapes must match.
    pub fn restore(&mut self, first: Vec<Tensor>, second: Vec<Tensor>, step: u64) -> Result<()> {
        if first.len() != self.vars.len() || second.len() != self.vars.len() {
            candle_core::bail!("optimizer state holds a different number of tensors");
        }
        for ((v, m), s) in self.vars.iter().zip(&first).zip(&second) {
            if v.dims() != m.dims() || v.dims() != s.dims() {
                candle_core::bail!(
                    "optimizer state shape {:?} does not match {:?}",
                    m.dims(),
                    v.dims()
                );
            }
        }
        self.first = first;
        self.second = second;
        self.step = step;
        Ok(())
    }
}
