//! Bindings of `ecorecover_core::spatial`: the neighbour graph is built once in Rust and the
//! permutation tests keep their generator and running moments between calls, so Python can
//! run permutations in chunks (progress bar, Ctrl-C between chunks) without copying anything.

use ecorecover_core::rng::RRandom;
use ecorecover_core::spatial::{
    coassociation_zscores, knn_graph, Colocalization, GroupPermuter, Moran, PermutationTest, Statistic,
};
use ecorecover_core::CoreError;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::glue::{enter, parameter_error, slice, to_py};

type Pair<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

fn check_codes(codes: &[u32], n: usize, name: &str) -> PyResult<()> {
    match codes.iter().position(|&c| c as usize >= n) {
        Some(i) => Err(parameter_error(format!("{name}[{i}] = {} is not below {n}", codes[i]))),
        None => Ok(()),
    }
}

/// x, y, label codes, group codes.
type Cells<'a> = (&'a [f64], &'a [f64], Vec<u32>, &'a [u32]);

/// The per-cell inputs of a permutation test: coordinates, label codes (below `n`, owned: the
/// test permutes them) and group codes, all of one length.
fn cells<'a>(
    x: &'a PyReadonlyArray1<'_, f64>,
    y: &'a PyReadonlyArray1<'_, f64>,
    labels: &PyReadonlyArray1<'_, u32>,
    n: usize,
    groups: &'a PyReadonlyArray1<'_, u32>,
) -> PyResult<Cells<'a>> {
    let (x, y) = (slice(x, "x")?, slice(y, "y")?);
    let (labels, groups) = (slice(labels, "labels")?.to_vec(), slice(groups, "groups")?);
    check_codes(&labels, n, "labels")?;
    if labels.len() != x.len() {
        return Err(to_py(CoreError::Shape(format!("{} labels for {} cells", labels.len(), x.len()))));
    }
    Ok((x, y, labels, groups))
}

/// Draw and evaluate `n` more permutations of `test`, without the GIL.
fn run_permutations<S: Statistic + Send>(
    test: &mut PermutationTest<S>,
    py: Python<'_>,
    n: usize,
    n_threads: Option<usize>,
) -> PyResult<()> {
    enter(py, n_threads, move || {
        test.run(n);
        Ok::<_, CoreError>(())
    })
}

/// (mean, sd) of `test`'s statistic over the permutations so far.
fn moments<'py, S: Statistic>(test: &PermutationTest<S>, py: Python<'py>) -> Pair<'py> {
    (test.moments.mean.clone().into_pyarray(py), test.moments.sd().into_pyarray(py))
}

/// The colocalization index of cell states with R's within-group permutations.
#[pyclass(module = "ecorecover._core")]
struct ColocalizationTest {
    inner: PermutationTest<Colocalization>,
}

#[pymethods]
impl ColocalizationTest {
    /// Build the graph (`k_others` nearest other cells within `radius`, rows with fewer than
    /// `min_cells` neighbours dropped) and seed R's generator with `seed`.
    #[new]
    #[pyo3(signature = (x, y, labels, n_states, groups, k_others, radius, min_cells, seed, n_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        x: PyReadonlyArray1<'_, f64>,
        y: PyReadonlyArray1<'_, f64>,
        labels: PyReadonlyArray1<'_, u32>,
        n_states: usize,
        groups: PyReadonlyArray1<'_, u32>,
        k_others: usize,
        radius: f64,
        min_cells: usize,
        seed: i32,
        n_threads: Option<usize>,
    ) -> PyResult<Self> {
        let (x, y, labels, groups) = cells(&x, &y, &labels, n_states, &groups)?;
        let inner = enter(py, n_threads, move || {
            let (graph, keep) = knn_graph(x, y, k_others, radius, min_cells)?;
            let stat = Colocalization::new(graph, &keep, n_states)?;
            Ok(PermutationTest::new(stat, GroupPermuter::new(labels, groups)?, RRandom::new(seed)))
        })?;
        Ok(ColocalizationTest { inner })
    }

    /// The observed index, row-major `S x S`.
    fn observed<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.observed().into_pyarray(py)
    }

    /// Kept cells per state (cells with at least `min_cells` neighbours).
    fn kept_per_state<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        let c: Vec<u64> =
            self.inner.stat.kept_per_state(self.inner.permuter.labels()).iter().map(|&v| v as u64).collect();
        c.into_pyarray(py)
    }

    /// (kept cells, edges of kept cells).
    fn sizes(&self) -> (usize, usize) {
        (self.inner.stat.n_kept(), self.inner.stat.n_edges())
    }

    /// Permutations evaluated so far.
    #[getter]
    fn n_done(&self) -> usize {
        self.inner.moments.count
    }

    /// Draw and evaluate `n` more permutations.
    #[pyo3(signature = (n, n_threads=None))]
    fn run(&mut self, py: Python<'_>, n: usize, n_threads: Option<usize>) -> PyResult<()> {
        run_permutations(&mut self.inner, py, n, n_threads)
    }

    /// (mean, sd) over the permutations so far, row-major `S x S` (NaN propagates).
    fn moments<'py>(&self, py: Python<'py>) -> Pair<'py> {
        moments(&self.inner, py)
    }

    /// R's `CoassociationTest` on `z` (row-major `S x S`), continuing this generator.
    fn coassociation<'py>(
        &mut self,
        py: Python<'py>,
        z: PyReadonlyArray1<'py, f64>,
        se: PyReadonlyArray1<'py, u32>,
        n_se: usize,
        n_perm: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (z, se) = (slice(&z, "z")?, slice(&se, "se")?);
        check_codes(se, n_se, "se")?;
        let n_states = se.len();
        let rng = &mut self.inner.rng;
        Ok(enter(py, Some(1), move || coassociation_zscores(z, n_states, se, n_se, n_perm, rng))?.into_pyarray(py))
    }
}

/// Moran's I of each label on a k-NN graph with R's within-group permutations.
#[pyclass(module = "ecorecover._core")]
struct MoranTest {
    inner: PermutationTest<Moran>,
}

#[pymethods]
impl MoranTest {
    #[new]
    #[pyo3(signature = (x, y, labels, n_labels, groups, k, seed, n_threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        x: PyReadonlyArray1<'_, f64>,
        y: PyReadonlyArray1<'_, f64>,
        labels: PyReadonlyArray1<'_, u32>,
        n_labels: usize,
        groups: PyReadonlyArray1<'_, u32>,
        k: usize,
        seed: i32,
        n_threads: Option<usize>,
    ) -> PyResult<Self> {
        let (x, y, labels, groups) = cells(&x, &y, &labels, n_labels, &groups)?;
        if k == 0 || k >= x.len() {
            return Err(parameter_error(format!("k must be in 1..{} (cells - 1), got {k}", x.len())));
        }
        let inner = enter(py, n_threads, move || {
            let (graph, _) = knn_graph(x, y, k, f64::INFINITY, 0)?;
            let stat = Moran::new(graph, k, &labels, n_labels)?;
            Ok(PermutationTest::new(stat, GroupPermuter::new(labels, groups)?, RRandom::new(seed)))
        })?;
        Ok(MoranTest { inner })
    }

    /// Observed Moran's I per label.
    fn observed<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.observed().into_pyarray(py)
    }

    #[getter]
    fn n_done(&self) -> usize {
        self.inner.moments.count
    }

    /// Draw and evaluate `n` more permutations.
    #[pyo3(signature = (n, n_threads=None))]
    fn run(&mut self, py: Python<'_>, n: usize, n_threads: Option<usize>) -> PyResult<()> {
        run_permutations(&mut self.inner, py, n, n_threads)
    }

    /// (mean, sd) of Moran's I per label over the permutations so far.
    fn moments<'py>(&self, py: Python<'py>) -> Pair<'py> {
        moments(&self.inner, py)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ColocalizationTest>()?;
    m.add_class::<MoranTest>()?;
    Ok(())
}
