"""``python -m bench.baseline``: serves the state-based yardstick on $HOST:$PORT."""

from bench.baseline.app import app
from bench.servers import serve

serve(app)
