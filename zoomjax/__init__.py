"""zoomjax: would this classifier have been right with a better framing?"""
__version__ = "0.1.0"
