use nasbench::train::{Cpu, data, trainer::*};
use nasbench::spec::ModelSpec;
struct P;
impl TrainProgress for P {
    fn step(&self, s: u64, t: u64, e: f64, l: Option<f32>, ips: f64) { eprintln!("step {s}/{t} epoch {e:.2} loss {l:?} {ips:.0} img/s"); }
    fn evaluated(&self, p: &EvalPoint) { eprintln!("eval {p:?}"); }
    fn note(&self, m: &str) { eprintln!("note {m}"); }
}
fn main() {
    let dir = std::path::Path::new("/tmp/synthcifar");
    data::write_synthetic(dir, 1024, 16, 1).unwrap();
    let d = data::load(dir, 16).unwrap();
    let m = vec![vec![0,1,1,0,0], vec![0,0,0,1,0], vec![0,0,0,1,0], vec![0,0,0,0,1], vec![0,0,0,0,0]];
    let spec = ModelSpec::new(&m, ["input","conv3x3-bn-relu","maxpool3x3","conv1x1-bn-relu","output"].iter().map(|s| s.to_string()).collect()).unwrap();
    let mut cfg = TrainConfig::default();
    for (k, v) in [("stem_filter_size","16"),("num_stacks","1"),("num_modules_per_stack","1"),("image_size","16"),("batch_size","32"),("train_epochs", &std::env::args().nth(1).unwrap_or("4".into()))] { cfg.set(k, v).unwrap(); }
    let t = std::time::Instant::now();
    let out = train(&mut Cpu, &spec, &cfg, &d, &RunOptions { seed: 1, checkpoint_dir: None, record_losses: 5, report_every: 20, progress: &P }).unwrap();
    eprintln!("{:?} in {:.1}s", out.evaluations.last(), t.elapsed().as_secs_f64());
}
