"""The report's drawings (matplotlib, Agg): each function takes columns computed by dbt and
draws them. The modules: base (figures, colours, atomic PNG writes), sankey (layout and
drawing of cluster flows), curves (lines per layer pair, boxes, bands), figures (degree CCDFs,
histograms, training curves, UMAP scatters)."""
from saew.report.plots.curves import band_panels, box_panels, line_panels
from saew.report.plots.figures import ccdf_figure, histogram_bars, training_figure, umap_figure
from saew.report.plots.sankey import OTHER, SankeyLayout, draw_sankey, sankey_figure, sankey_layout

__all__ = ["OTHER", "SankeyLayout", "band_panels", "box_panels", "ccdf_figure", "draw_sankey",
           "histogram_bars", "line_panels", "sankey_figure", "sankey_layout", "training_figure",
           "umap_figure"]
