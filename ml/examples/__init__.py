"""Example models modelled on the seed's three model types; each module trains one and writes its artefacts."""
