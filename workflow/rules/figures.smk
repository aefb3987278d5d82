# The figures, each drawn by a notebook in workflow/notebooks/ that calls softness.plotting.
# The executed notebooks are kept as logs (results/logs/figures/*.ipynb); the notebooks
# themselves also open by hand on the results without rerunning anything. Figures drawn from
# per-temperature files use run 0 of each temperature; those drawn from results/arrhenius.h5 show
# every independent run pooled.

ALL_DYNAMICS = expand("results/T{T}/dynamics.h5", T=TEMPERATURES)
ALL_HOPS = expand("results/T{T}/hops.h5", T=TEMPERATURES)
ALL_SOFTNESS = expand("results/T{T}/softness.h5", T=TEMPERATURES)
ALL_TRAJECTORIES = expand("results/T{T}/trajectory.h5", T=TEMPERATURES)

FIGURES = [
    "relaxation",
    "rearrangement_probability",
    "barriers",
    "crossover",
    "pair_correlation",
    "p_hop",
    "softness_distributions",
    "classifier",
]
FIGURE_FILES = expand("results/figures/{name}.{ext}", name=FIGURES, ext=["png", "pdf"])


rule figure_relaxation:
    input:
        dynamics=ALL_DYNAMICS,
        arrhenius="results/arrhenius.h5",
    output:
        png=report("results/figures/relaxation.png", caption="../report/relaxation.rst",
                   category="1. Strong and fragile"),
        pdf="results/figures/relaxation.pdf",
    log:
        notebook="results/logs/figures/relaxation.ipynb",
    benchmark:
        "results/benchmarks/figures/relaxation.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/relaxation.py.ipynb"


rule figure_rearrangement_probability:
    input:
        arrhenius="results/arrhenius.h5",
    output:
        png=report("results/figures/rearrangement_probability.png",
                   caption="../report/rearrangement_probability.rst", category="1. Strong and fragile"),
        pdf="results/figures/rearrangement_probability.pdf",
    log:
        notebook="results/logs/figures/rearrangement_probability.ipynb",
    benchmark:
        "results/benchmarks/figures/rearrangement_probability.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/rearrangement_probability.py.ipynb"


rule figure_barriers:
    input:
        arrhenius="results/arrhenius.h5",
    output:
        png=report("results/figures/barriers.png", caption="../report/barriers.rst",
                   category="1. Strong and fragile"),
        pdf="results/figures/barriers.pdf",
    log:
        notebook="results/logs/figures/barriers.ipynb",
    benchmark:
        "results/benchmarks/figures/barriers.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/barriers.py.ipynb"


rule figure_crossover:
    input:
        arrhenius="results/arrhenius.h5",
    output:
        png=report("results/figures/crossover.png", caption="../report/crossover.rst",
                   category="1. Strong and fragile"),
        pdf="results/figures/crossover.pdf",
    log:
        notebook="results/logs/figures/crossover.ipynb",
    benchmark:
        "results/benchmarks/figures/crossover.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/crossover.py.ipynb"


rule figure_pair_correlation:
    input:
        trajectories=ALL_TRAJECTORIES,
    output:
        png=report("results/figures/pair_correlation.png", caption="../report/pair_correlation.rst",
                   category="2. Diagnostics"),
        pdf="results/figures/pair_correlation.pdf",
    log:
        notebook="results/logs/figures/pair_correlation.ipynb",
    benchmark:
        "results/benchmarks/figures/pair_correlation.tsv"
    threads: 1
    resources:
        mem_mb=2000 + TRAJECTORY_MB,
        runtime=20,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/pair_correlation.py.ipynb"


rule figure_p_hop:
    input:
        hops=ALL_HOPS,
    output:
        png=report("results/figures/p_hop.png", caption="../report/p_hop.rst", category="2. Diagnostics"),
        pdf="results/figures/p_hop.pdf",
    log:
        notebook="results/logs/figures/p_hop.ipynb",
    benchmark:
        "results/benchmarks/figures/p_hop.tsv"
    threads: 1
    resources:
        mem_mb=1000 + 2 * len(TEMPERATURES) * frames_mb(1),
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/p_hop.py.ipynb"


rule figure_softness_distributions:
    input:
        softness=ALL_SOFTNESS,
    output:
        png=report("results/figures/softness_distributions.png",
                   caption="../report/softness_distributions.rst", category="2. Diagnostics"),
        pdf="results/figures/softness_distributions.pdf",
    log:
        notebook="results/logs/figures/softness_distributions.ipynb",
    benchmark:
        "results/benchmarks/figures/softness_distributions.tsv"
    threads: 1
    resources:
        mem_mb=1000 + 2 * len(TEMPERATURES) * frames_mb(1),
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/softness_distributions.py.ipynb"


rule figure_classifier:
    input:
        model="results/model.h5",
    output:
        png=report("results/figures/classifier.png", caption="../report/classifier.rst",
                   category="2. Diagnostics"),
        pdf="results/figures/classifier.pdf",
    log:
        notebook="results/logs/figures/classifier.ipynb",
    benchmark:
        "results/benchmarks/figures/classifier.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    notebook:
        "../notebooks/classifier.py.ipynb"
