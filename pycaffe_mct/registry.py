"""Type registries: the string in a prototxt's ``type:`` field -> the class that implements it.

Layers and solvers each have exactly one registry, filled by class decorators
when their modules are imported, so adding a type is writing one class.
"""


class TypeRegistry:
    """A name -> class table whose ``register`` decorator refuses duplicates."""

    def __init__(self, kind):
        self.kind = kind
        self._classes = {}

    def register(self, type_name):
        """Class decorator: make ``type_name`` create this class."""
        def decorate(cls):
            if type_name in self._classes:
                raise RuntimeError(f"{self.kind} type {type_name!r} registered twice")
            cls.type_name = type_name
            self._classes[type_name] = cls
            return cls
        return decorate

    def get(self, type_name):
        """The class registered as ``type_name``, or None."""
        return self._classes.get(type_name)

    def names(self):
        """The registered type names, sorted."""
        return sorted(self._classes)

    def __contains__(self, type_name):
        return type_name in self._classes

    def __iter__(self):
        return iter(self.names())
