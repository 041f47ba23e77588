"""biglittle: a little and a big language model generating together."""
