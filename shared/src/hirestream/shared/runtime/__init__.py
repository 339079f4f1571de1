"""How one service process runs: its clients (clients.py), its topics (topics.py), the gauges
sampled in the background (sampler.py), its AsyncAPI document (asyncapi.py), and the process
itself (process.py). Each service's `app.py` composes these with its own stores, use cases,
routes and subscriptions."""
