//! Small helpers around candle shared by the models: deterministic
//! initialisation, (de)serialisation of weights, Gaussian NLL.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::BTreeMap;

pub type Result<T> = std::result::Result<T, ModelError>;

/// A model's weights by variable name: (shape, row-major values).
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("model file: {0}")]
    Format(String),
    #[error("{0}")]
    Data(String),
}

/// Re-initialise every variable from `seed` (candle's CPU initialisers are
/// not seedable): weights uniform in ±1/√fan_in, biases 0, except LSTM
/// forget-gate biases at 1 (gates open at first, the usual remedy for
/// vanishing memory early in training).
pub fn reseed(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let data = varmap.data().lock().expect("poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if dims.len() >= 2 {
            #[allow(clippy::cast_precision_loss)]
            let bound = 1.0 / (dims[dims.len() - 1] as f32).sqrt();
            (0..n).map(|_| (rng.f32() * 2.0 - 1.0) * bound).collect()
        } else if name.ends_with("bias_ih_l0") {
            let h = n / 4;
            (0..n)
                .map(|i| if (h..2 * h).contains(&i) { 1.0 } else { 0.0 })
                .collect()
        } else {
            vec![0.0; n]
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// Every variable as name → (shape, values), for storing a model.
pub fn export(varmap: &VarMap) -> Result<Weights> {
    let data = varmap.data().lock().expect("poisoned");
    let mut out = BTreeMap::new();
    for (name, var) in data.iter() {
        let t = var.as_tensor().flatten_all()?.to_dtype(DType::F32)?;
        out.insert(name.clone(), (var.dims().to_vec(), t.to_vec1::<f32>()?));
    }
    Ok(out)
}

/// Load exported weights into a freshly built model's variables; every
/// variable must be present with the same shape, and nothing else.
pub fn import(varmap: &VarMap, weights: &Weights) -> Result<()> {
    let data = varmap.data().lock().expect("poisoned");
    if data.len() != weights.len() {
        return Err(ModelError::Format(format!(
            "{} tensors stored, the model has {}",
            weights.len(),
            data.len()
        )));
    }
    for (name, var) in data.iter() {
        let (shape, values) = weights
            .get(name)
            .ok_or_else(|| ModelError::Format(format!("tensor {name} missing")))?;
        if shape.as_slice() != var.dims() || values.len() != shape.iter().product::<usize>() {
            return Err(ModelError::Format(format!(
                "tensor {name}: shape {shape:?}, the model wants {:?}",
                var.dims()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Format(format!(
                "tensor {name}: non-finite weight"
            )));
        }
        var.set(&Tensor::from_vec(
            values.clone(),
            shape.clone(),
            &Device::Cpu,
        )?)?;
    }
    Ok(())
}

/// Variables in name order (deterministic optimiser state).
pub fn vars(varmap: &VarMap) -> Vec<Var> {
    let data = varmap.data().lock().expect("poisoned");
    let mut v: Vec<(&String, &Var)> = data.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.into_iter().map(|(_, v)| v.clone()).collect()
}

/// Mean Gaussian negative log-likelihood (without the constant), with the
/// log-variance clamped so one outlier cannot blow the loss up.
pub fn gaussian_nll(mean: &Tensor, log_var: &Tensor, target: &Tensor) -> Result<Tensor> {
    let log_var = log_var.clamp(-8f32, 8f32)?;
    let sq = (target - mean)?.sqr()?;
    let nll = ((&log_var + (sq / log_var.exp()?)?)? * 0.5)?;
    Ok(nll.mean_all()?)
}
