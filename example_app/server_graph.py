"""The example chat graph for LangGraph Server (``langgraph dev``), captured into Label Studio.

The server brings its own checkpointer, so the graph is compiled without one.
"""

from example_app.graph import build_graph
from langchain_label_studio import Project, capture

graph = capture(build_graph().compile(), Project("Support chats", mode="chat"))
