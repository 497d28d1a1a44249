"""Energy and carbon: meters read joules, attribution splits a batch's among its jobs, carbon turns
joules into grams CO2e, and the accountant ties them together per batch."""
