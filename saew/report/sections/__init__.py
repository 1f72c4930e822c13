"""The report's content, by subject. Each function takes (Reader, Setup) and returns plots
(Items), tables or paragraphs; the lists below fix the order they are produced in (the page
orders them by section, the findings first: items.SECTION_ORDER)."""
from __future__ import annotations

from saew.report.sections import clusters, coactivation, evolution, findings, flows, matching, training

# (section, function): the section is where a failure's note goes
PLOTTERS = [("Cluster flows", flows.plot_sankeys), ("Evolution", evolution.plot_evolution),
            ("Clusters", clusters.plot_cluster_counts), ("Clusters", clusters.plot_umap),
            ("Co-activation", coactivation.plot_coactivation), ("Matching", matching.plot_matching),
            ("Training", training.plot_training)]
TEXTS = [("Findings", findings.texts)]
TABLES = [("Findings", findings.tables), ("Release", training.table_release),
          ("Evolution", evolution.table_evolution), ("Cluster flows", flows.table_fates),
          ("Matching", matching.table_persistent)]
