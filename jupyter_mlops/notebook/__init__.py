"""Reading a notebook: cells and their roles, the names each cell defines and uses,
parameters, and the analysis that turns them into steps. Pure functions, no kernels."""
