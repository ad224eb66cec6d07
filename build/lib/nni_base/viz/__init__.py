"""Pictures of cells, architecture probabilities and curves (matplotlib, written atomically)."""

from .plotting import plot_cells, plot_prior

__all__ = ['plot_cells', 'plot_prior']
