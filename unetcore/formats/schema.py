"""The protobuf messages unetcore reads, with Caffe's field names and defaults.

This mirrors the parts of ``caffe.proto`` (BVLC Caffe and the caffe_unet fork)
that the U-Net, its data layers and the solvers use. Each message is a table of
fields; a field has a type (a scalar type, an enum or another message), a
default, and may be repeated. Parameter messages of Caffe layers that unetcore
does not implement are *open*: any content parses, so real Caffe prototxt files
load up to the point where the net asks for an unknown layer type.
"""
from dataclasses import dataclass, field as dc_field

SCALAR_TYPES = ("int", "uint", "float", "bool", "string")     # uint: uint32


@dataclass(frozen=True)
class Field:
    name: str
    type: str                # a scalar type, "enum" or a message name
    default: object = None
    repeated: bool = False
    enum: tuple = ()         # the allowed names, for type "enum"


@dataclass
class MessageType:
    name: str
    fields: dict = dc_field(default_factory=dict)
    open: bool = False       # an open message accepts any field (unimplemented Caffe params)


MESSAGES = {}


def message(name, *fields, open=False):
    MESSAGES[name] = MessageType(name, {f.name: f for f in fields}, open)


def F(name, type_, default=None, repeated=False, enum=()):
    if type_ == "enum" and default is None and not repeated:
        default = enum[0]
    return Field(name, type_, default, repeated, tuple(enum))


def R(name, type_, enum=()):
    return F(name, type_, repeated=True, enum=enum)


PHASE = ("TRAIN", "TEST")
ENGINE = ("DEFAULT", "CAFFE", "CUDNN")

message("BlobShape", R("dim", "int"))
message("BlobProto", R("data", "float"), R("diff", "float"), F("num", "int", 0), F("channels", "int", 0),
        F("height", "int", 0), F("width", "int", 0), F("shape", "BlobShape"))
message("FillerParameter",
        F("type", "string", "constant"), F("value", "float", 0.0), F("min", "float", 0.0),
        F("max", "float", 1.0), F("mean", "float", 0.0), F("std", "float", 1.0),
        F("sparse", "int", -1),
        F("variance_norm", "enum", "FAN_IN", enum=("FAN_IN", "FAN_OUT", "AVERAGE")))
message("NetState", F("phase", "enum", "TEST", enum=PHASE), F("level", "int", 0), R("stage", "string"))
message("NetStateRule", F("phase", "enum", None, enum=PHASE), F("min_level", "int"),
        F("max_level", "int"), R("stage", "string"), R("not_stage", "string"))
message("ParamSpec", F("name", "string"), F("share_mode", "enum", enum=("STRICT", "PERMISSIVE")),
        F("lr_mult", "float", 1.0), F("decay_mult", "float", 1.0))

message("ConvolutionParameter",
        F("num_output", "int", 0), F("bias_term", "bool", True),
        R("pad", "int"), R("kernel_size", "int"), R("stride", "int"), R("dilation", "int"),
        F("pad_h", "int", 0), F("pad_w", "int", 0), F("kernel_h", "int"), F("kernel_w", "int"),
        F("stride_h", "int"), F("stride_w", "int"), F("group", "int", 1),
        F("weight_filler", "FillerParameter"), F("bias_filler", "FillerParameter"),
        F("engine", "enum", enum=ENGINE), F("axis", "int", 1), F("force_nd_im2col", "bool", False))
message("PoolingParameter",
        F("pool", "enum", enum=("MAX", "AVE", "STOCHASTIC")), R("pad", "int"),
        F("pad_h", "int", 0), F("pad_w", "int", 0), R("kernel_size", "int"),
        F("kernel_h", "int"), F("kernel_w", "int"), R("stride", "int"),
        F("stride_h", "int"), F("stride_w", "int"), F("engine", "enum", enum=ENGINE),
        F("global_pooling", "bool", False), F("round_mode", "enum", enum=("CEIL", "FLOOR")))
message("ReLUParameter", F("negative_slope", "float", 0.0), F("engine", "enum", enum=ENGINE))
message("DropoutParameter", F("dropout_ratio", "float", 0.5), F("scale_train", "bool", True))
message("CropParameter", F("axis", "int", 2), R("offset", "uint"))
message("ConcatParameter", F("axis", "int", 1), F("concat_dim", "int", 1))
message("SoftmaxParameter", F("engine", "enum", enum=ENGINE), F("axis", "int", 1))
message("LossParameter", F("ignore_label", "int"),
        F("normalization", "enum", "VALID", enum=("FULL", "VALID", "BATCH_SIZE", "NONE")),
        F("normalize", "bool"))
message("EltwiseParameter", F("operation", "enum", "SUM", enum=("PROD", "SUM", "MAX")),
        R("coeff", "float"), F("stable_prod_grad", "bool", True))
message("AccuracyParameter", F("top_k", "int", 1), F("axis", "int", 1), F("ignore_label", "int"))
# caffe_unet's evaluation layers (src/caffe/proto/caffe.proto at e9ff07f), field for field.
message("IoUParameter", F("axis", "int", 1), F("background_label", "int", 0))
message("F1Parameter", F("axis", "int", 1), F("background_label", "int", 0),
        F("distance_mode", "enum", "IOU", enum=("EUCLIDEAN", "IOU")),
        F("distance_threshold", "float", 0.5))
message("InputParameter", R("shape", "BlobShape"))
message("HDF5DataParameter", F("source", "string"), F("batch_size", "int", 1),
        F("shuffle", "bool", False))
message("TransformationParameter", F("scale", "float", 1.0), F("mirror", "bool", False),
        F("crop_size", "int", 0), F("mean_file", "string"), R("mean_value", "float"),
        F("force_color", "bool", False), F("force_gray", "bool", False))
# unetcore's TIFF tile source (the ISBI layout: one stack of images, one of labels).
message("TiffDataParameter",
        F("image", "string"), F("label", "string"), F("weight", "string"),
        F("batch_size", "int", 1), F("tile_size", "int", 0), F("label_size", "int", 0),
        F("scale", "float", 0.0), F("mean", "float", 0.0), F("num_classes", "int", 2),
        F("w0", "float", 10.0), F("sigma", "float", 5.0), F("bits", "int", 0))
# caffe_unet's vectors: one value per spatial axis (z, y, x or y, x), written { v: 1 v: 2 }.
message("VectorInt32", R("v", "int"))
message("VectorFloat", R("v", "float"))
# caffe_unet's augmentation layers, field for field (src/caffe/proto/caffe.proto at e9ff07f),
# with unetcore's own deform_std and grid_points: the paper's elastic deformation on a
# grid_points x grid_points grid spanning the tile (used when random_elastic_grid_spacing is
# not given), and TiffData's tile source.
message("CreateDeformationParameter",
        F("voxel_relsize_z", "float", 1.0), F("batch_size", "int", 1), F("nz", "int", 0),
        F("ny", "int", 0), F("nx", "int", 0), F("ncomponents", "int", 2),
        F("random_elastic_grid_spacing", "VectorInt32"),
        F("random_elastic_deform_magnitude", "VectorFloat"),
        F("random_rotate_from", "VectorFloat"), F("random_rotate_to", "VectorFloat"),
        F("random_offset_from", "VectorFloat"), F("random_offset_to", "VectorFloat"),
        F("random_offset_range_from_in_blob_shape", "bool", False),
        F("random_offset_range_from_pdf", "bool", False),
        F("random_offset_range_from_ignore_label", "int", 0),
        F("random_mirror_flag", "VectorInt32"),
        F("deform_std", "float", 10.0), F("grid_points", "int", 3))
message("ApplyDeformationParameter",
        F("interpolation", "string", "linear"), F("extrapolation", "string", "mirror"),
        F("output_shape_from", "string", ""))
message("ValueAugmentationParameter",
        F("black_from", "float", 0.0), F("black_to", "float", 0.0),
        F("white_from", "float", 1.0), F("white_to", "float", 1.0),
        F("slope_min", "float", 0.666), F("slope_max", "float", 1.5),
        F("n_control_point_insertions", "int", 2), F("lut_size", "int", 256))
message("ValueTransformationParameter", F("offset", "VectorFloat"), F("scale", "VectorFloat"))

# Caffe layer parameters that unetcore parses but does not implement.
OPEN_LAYER_PARAMS = (
    "argmax_param", "batch_norm_param", "bias_param", "clip_param", "contrastive_loss_param",
    "data_param", "dummy_data_param", "elu_param", "embed_param", "exp_param", "flatten_param",
    "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "log_param", "lrn_param", "memory_data_param", "mvn_param",
    "parameter_param", "power_param", "prelu_param", "python_param", "recurrent_param",
    "reduction_param", "reshape_param", "scale_param", "sigmoid_param", "slice_param",
    "spp_param", "swish_param", "tanh_param", "threshold_param", "tile_param",
    "window_data_param")
for _name in OPEN_LAYER_PARAMS:
    message("Open_" + _name, open=True)

message("LayerParameter",
        F("name", "string", ""), F("type", "string", ""), R("bottom", "string"), R("top", "string"),
        F("phase", "enum", enum=PHASE), R("loss_weight", "float"), R("param", "ParamSpec"),
        R("blobs", "BlobProto"), R("propagate_down", "bool"),
        R("include", "NetStateRule"), R("exclude", "NetStateRule"),
        F("transform_param", "TransformationParameter"), F("loss_param", "LossParameter"),
        F("accuracy_param", "AccuracyParameter"), F("concat_param", "ConcatParameter"),
        F("convolution_param", "ConvolutionParameter"), F("crop_param", "CropParameter"),
        F("dropout_param", "DropoutParameter"), F("eltwise_param", "EltwiseParameter"),
        F("f1_param", "F1Parameter"), F("iou_param", "IoUParameter"),
        F("hdf5_data_param", "HDF5DataParameter"), F("input_param", "InputParameter"),
        F("pooling_param", "PoolingParameter"), F("relu_param", "ReLUParameter"),
        F("softmax_param", "SoftmaxParameter"), F("tiff_data_param", "TiffDataParameter"),
        F("create_deformation_param", "CreateDeformationParameter"),
        F("apply_deformation_param", "ApplyDeformationParameter"),
        F("value_augmentation_param", "ValueAugmentationParameter"),
        F("value_transformation_param", "ValueTransformationParameter"),
        *(F(name, "Open_" + name) for name in OPEN_LAYER_PARAMS))
# Caffe's V1 layer types (V1LayerParameter.LayerType) with their V2 type names
# (upgrade_proto.cpp), and the 2015 U-Net release's own two-bottom centre CROP.
V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold", "CROP": "Crop"}
# The layer parameters a V1 layer may carry (the same messages, under the same names, as in
# V2): those unetcore implements, then those it parses only.
V1_LAYER_PARAMS = ("accuracy_param", "concat_param", "convolution_param", "dropout_param",
                   "eltwise_param", "hdf5_data_param", "pooling_param", "relu_param",
                   "softmax_param", "transform_param", "loss_param")
V1_OPEN_PARAMS = ("argmax_param", "contrastive_loss_param", "data_param", "dummy_data_param",
                  "exp_param", "hdf5_output_param", "hinge_loss_param", "image_data_param",
                  "infogain_loss_param", "inner_product_param", "lrn_param",
                  "memory_data_param", "mvn_param", "power_param", "sigmoid_param",
                  "slice_param", "tanh_param", "threshold_param", "window_data_param")
message("Open_V0LayerParameter", open=True)
message("V1LayerParameter",
        R("bottom", "string"), R("top", "string"), F("name", "string", ""),
        R("include", "NetStateRule"), R("exclude", "NetStateRule"),
        F("type", "enum", "NONE", enum=tuple(V1_TYPES)), R("blobs", "BlobProto"),
        R("param", "string"), R("blob_share_mode", "enum", enum=("STRICT", "PERMISSIVE")),
        R("blobs_lr", "float"), R("weight_decay", "float"), R("loss_weight", "float"),
        F("layer", "Open_V0LayerParameter"),
        F("accuracy_param", "AccuracyParameter"), F("concat_param", "ConcatParameter"),
        F("convolution_param", "ConvolutionParameter"), F("dropout_param", "DropoutParameter"),
        F("eltwise_param", "EltwiseParameter"), F("hdf5_data_param", "HDF5DataParameter"),
        F("pooling_param", "PoolingParameter"), F("relu_param", "ReLUParameter"),
        F("softmax_param", "SoftmaxParameter"),
        F("transform_param", "TransformationParameter"), F("loss_param", "LossParameter"),
        *(F(name, "Open_" + name) for name in V1_OPEN_PARAMS))
message("NetParameter",
        F("name", "string", ""), R("input", "string"), R("input_shape", "BlobShape"),
        R("input_dim", "int"), F("force_backward", "bool", False), F("state", "NetState"),
        F("debug_info", "bool", False), R("layer", "LayerParameter"),
        R("layers", "V1LayerParameter"))
message("SolverParameter",
        F("net", "string"), F("net_param", "NetParameter"), F("train_net", "string"),
        R("test_net", "string"), F("train_net_param", "NetParameter"),
        R("test_net_param", "NetParameter"), F("train_state", "NetState"),
        R("test_state", "NetState"), R("test_iter", "int"), F("test_interval", "int", 0),
        F("test_compute_loss", "bool", False), F("test_initialization", "bool", True),
        F("base_lr", "float", 0.01), F("display", "int", 0), F("average_loss", "int", 1),
        F("max_iter", "int", 0), F("iter_size", "int", 1), F("lr_policy", "string", "fixed"),
        F("gamma", "float", 0.0), F("power", "float", 0.0), F("momentum", "float", 0.0),
        F("weight_decay", "float", 0.0), F("regularization_type", "string", "L2"),
        F("stepsize", "int", 0), R("stepvalue", "int"), F("clip_gradients", "float", -1.0),
        F("snapshot", "int", 0), F("snapshot_prefix", "string", ""),
        F("snapshot_diff", "bool", False),
        F("snapshot_format", "enum", "HDF5", enum=("HDF5", "BINARYPROTO")),    # Caffe: BINARYPROTO
        F("solver_mode", "enum", "GPU", enum=("CPU", "GPU")), F("device_id", "int", 0),
        F("random_seed", "int", -1), F("type", "string", "SGD"), F("delta", "float", 1e-8),
        F("momentum2", "float", 0.999), F("rms_decay", "float", 0.99),
        F("debug_info", "bool", False), F("snapshot_after_train", "bool", True),
        F("solver_type", "enum", "SGD",
          enum=("SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA", "ADAM")))
