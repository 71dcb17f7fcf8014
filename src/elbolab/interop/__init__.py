"""Interoperation with other libraries' models (diffusers): load them as elbolab models, export runs to them."""
