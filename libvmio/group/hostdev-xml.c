/* placeholder: being written */
typedef int vmio_placeholder_hostdev_xml;
